"""Point-in-time join: random data checked against a brute-force reference; TTL, defaults, composite keys."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from feature_store import Feature, FeatureStore, TableSpec, point_in_time_join, vector_matrix

D = 4


def _ts(seconds) -> pd.Series:
    return pd.to_datetime(np.asarray(seconds), unit="s", utc=True)


def _feature_table(rng, n_keys: int, n_rows: int, composite: bool) -> pd.DataFrame:
    t = rng.choice(np.arange(0, 1000, 5), size=n_rows)  # coarse grid: many label times equal a feature time
    df = pd.DataFrame({"user_id": rng.integers(0, n_keys, n_rows), "event_timestamp": _ts(t)})
    if composite:
        df["ctx"] = rng.choice(["a", "b"], n_rows)
    keys = ["user_id", "ctx"] if composite else ["user_id"]
    df = df.drop_duplicates(keys + ["event_timestamp"]).reset_index(drop=True)
    df["score"] = rng.normal(size=len(df))
    df["vec"] = list(rng.normal(size=(len(df), D)).astype(np.float32))
    return df


def _brute_force(labels: pd.DataFrame, feats: pd.DataFrame, keys: list[str], ttl_s: float | None,
                 strict: bool = False):
    score, vec, missing = [], [], []
    for _, lab in labels.iterrows():
        m = np.ones(len(feats), dtype=bool)
        for k in keys:
            m &= (feats[k] == lab[k]).to_numpy()
        before = (feats["event_timestamp"] < lab["event_timestamp"]) if strict else \
            (feats["event_timestamp"] <= lab["event_timestamp"])
        m &= before.to_numpy()
        if ttl_s is not None:
            m &= (feats["event_timestamp"] >= lab["event_timestamp"] - pd.Timedelta(seconds=ttl_s)).to_numpy()
        cand = feats[m]
        if len(cand) == 0:
            score.append(-9.0), vec.append(np.zeros(D, np.float32)), missing.append(True)
        else:
            row = cand.loc[cand["event_timestamp"].idxmax()]
            score.append(row["score"]), vec.append(row["vec"]), missing.append(False)
    return np.array(score), np.stack(vec), np.array(missing)


@pytest.mark.parametrize("seed,composite,ttl_s,strict", [(0, False, None, False), (1, False, 120.0, False),
                                                          (2, True, None, False), (3, True, 60.0, False),
                                                          (4, False, None, False), (5, False, None, True),
                                                          (6, True, 60.0, True)])
def test_matches_brute_force_and_never_leaks_future(tmp_path, seed, composite, ttl_s, strict):
    """strict (daily runs' profiles): a feature row at exactly the label's time is not used either; the coarse
    time grid makes such ties common, so the strict cases would fail with <=."""
    rng = np.random.default_rng(seed)
    keys = ["user_id", "ctx"] if composite else ["user_id"]
    spec = TableSpec("user_vec", "user", tuple(keys),
                     (Feature("score", "float64", default=-9.0), Feature("vec", "vector", dim=D)),
                     created_timestamp=None, key_dtypes={"ctx": "string"} if composite else {},
                     ttl=None if ttl_s is None else dt.timedelta(seconds=ttl_s))
    feats = _feature_table(rng, n_keys=15, n_rows=300, composite=composite)
    store = FeatureStore(tmp_path)
    ref = store.publish(spec, feats, recipe={"seed": seed})
    n = 400
    labels = pd.DataFrame({"user_id": rng.integers(0, 18, n),  # keys 15..17 never have features
                           "event_timestamp": _ts(rng.choice(np.arange(0, 1100, 5), n)),
                           "label": rng.integers(0, 2, n)})
    if composite:
        labels["ctx"] = rng.choice(["a", "b", "c"], n)
    out = point_in_time_join(labels, store, {"user_vec": ref.version}, threads=1, strict=strict)
    assert out.column_names[:len(labels.columns)] == list(labels.columns)
    np.testing.assert_array_equal(out["label"].to_numpy(), labels["label"].to_numpy())  # row order kept
    want_score, want_vec, want_missing = _brute_force(labels, feats, keys, ttl_s, strict)
    np.testing.assert_array_equal(out["user_vec__missing"].to_numpy(), want_missing)
    np.testing.assert_allclose(out["score"].to_numpy(), want_score)
    np.testing.assert_array_equal(vector_matrix(out["vec"]), want_vec)
    assert want_missing.any() and not want_missing.all()


def test_future_feature_row_is_never_used(tmp_path):
    spec = TableSpec("t", "item", ("item_id",), (Feature("x", "int64", default=0),), created_timestamp=None)
    store = FeatureStore(tmp_path)
    store.publish(spec, pd.DataFrame({"item_id": [1, 1], "event_timestamp": _ts([100, 200]), "x": [10, 20]}),
                  recipe={"r": 1})
    labels = pd.DataFrame({"item_id": [1, 1, 1, 1], "event_timestamp": _ts([99, 100, 199, 200])})
    out = point_in_time_join(labels, store, {"t": "latest"})
    assert out["x"].to_pylist() == [0, 10, 10, 20]
    assert out["t__missing"].to_pylist() == [True, False, False, False]


def test_multiple_tables_static_table_and_prefixes(tmp_path):
    store = FeatureStore(tmp_path)
    items = TableSpec("item_emb", "item", ("item_id",), (Feature("emb", "vector", dim=2, default=[9, 9]),),
                      created_timestamp=None)
    users = TableSpec("user_emb", "user", ("user_id",), (Feature("emb", "vector", dim=3),), created_timestamp=None)
    genres = TableSpec("item_genre", "item", ("item_id",), (Feature("genre", "string", default="unknown"),
                                                           Feature("tags", "list_string")),
                       event_timestamp=None, created_timestamp=None)
    store.publish(items, pd.DataFrame({"item_id": [1, 2], "event_timestamp": _ts([0, 0]),
                                       "emb": [np.array([1, 1]), np.array([2, 2])]}), recipe={"i": 1})
    uref = store.publish(users, pd.DataFrame({"user_id": [7], "event_timestamp": _ts([50]),
                                              "emb": [np.array([7, 7, 7])]}), recipe={"u": 1})
    store.publish(genres, pd.DataFrame({"item_id": [2], "genre": ["drama"], "tags": [["x", "y"]]}),
                  recipe={"g": 1})
    labels = pa.table({"user_id": pa.array([7, 7, 8], pa.int32()), "item_id": [2, 3, 1],
                       "event_timestamp": pa.array(_ts([60, 40, 999]).to_numpy(), pa.timestamp("ns")),  # naive=UTC
                       "y": [1, 0, 1]})
    tables = {"item_emb": "latest", "user_emb": uref.version, "item_genre": "latest"}
    with pytest.raises(ValueError, match="prefix_features=True"):
        point_in_time_join(labels, store, tables)  # two features named 'emb'
    out = point_in_time_join(labels, store, tables, prefix_features=True)
    assert out.column_names == ["user_id", "item_id", "event_timestamp", "y", "item_emb__emb", "item_emb__missing",
                                "user_emb__emb", "user_emb__missing", "item_genre__genre", "item_genre__tags",
                                "item_genre__missing"]
    np.testing.assert_array_equal(vector_matrix(out["item_emb__emb"]), [[2, 2], [9, 9], [1, 1]])
    np.testing.assert_array_equal(vector_matrix(out["user_emb__emb"]), [[7, 7, 7], [0, 0, 0], [0, 0, 0]])
    assert out["user_emb__missing"].to_pylist() == [False, True, True]
    assert out["item_genre__genre"].to_pylist() == ["drama", "unknown", "unknown"]
    assert out["item_genre__tags"].to_pylist() == [["x", "y"], None, None]


def test_bad_labels_give_clear_errors(tmp_path):
    spec = TableSpec("t", "item", ("item_id",), (Feature("x", "int64"),), created_timestamp=None)
    store = FeatureStore(tmp_path)
    store.publish(spec, pd.DataFrame({"item_id": [1], "event_timestamp": _ts([1]), "x": [1]}), recipe={"r": 1})
    with pytest.raises(ValueError, match="missing join key 'item_id'"):
        point_in_time_join(pd.DataFrame({"event_timestamp": _ts([1])}), store, {"t": "latest"})
    with pytest.raises(ValueError, match="no timestamp column 'ts'"):
        point_in_time_join(pd.DataFrame({"item_id": [1]}), store, {"t": "latest"}, timestamp_col="ts")
    with pytest.raises(ValueError, match="join key 'item_id' has type .*string, table 't' needs int64"):
        point_in_time_join(pd.DataFrame({"item_id": ["1"], "event_timestamp": _ts([1])}), store, {"t": "latest"})


def test_empty_labels_and_empty_table(tmp_path):
    spec = TableSpec("t", "item", ("item_id",), (Feature("v", "vector", dim=2),), created_timestamp=None)
    store = FeatureStore(tmp_path)
    store.publish(spec, pd.DataFrame({"item_id": pd.Series([], dtype="int64"),
                                      "event_timestamp": _ts(np.array([], dtype="int64")),
                                      "v": pd.Series([], dtype=object)}), recipe={"r": 1})
    out = point_in_time_join(pd.DataFrame({"item_id": [1, 2], "event_timestamp": _ts([1, 2])}), store, {"t": "latest"})
    np.testing.assert_array_equal(vector_matrix(out["v"]), np.zeros((2, 2)))
    empty = point_in_time_join(pd.DataFrame({"item_id": pd.Series([], dtype="int64"),
                                             "event_timestamp": _ts(np.array([], dtype="int64"))}),
                               store, {"t": "latest"})
    assert empty.num_rows == 0 and "t__missing" in empty.column_names


def test_stream_vectors_across_many_batches():
    from feature_store.point_in_time import stream_vectors
    rng = np.random.default_rng(0)
    mat = rng.normal(size=(1000, 3)).astype(np.float32)
    arr = pa.FixedSizeListArray.from_arrays(pa.array(mat.ravel()), 3)
    batches = [pa.record_batch([arr.slice(a, b - a)], names=["v"]) for a, b in [(0, 1), (1, 401), (401, 401),
                                                                              (401, 1000)]]
    idx = rng.integers(0, 1000, 5000)
    missing = rng.random(5000) < 0.1
    got = vector_matrix(stream_vectors(batches, idx, missing, Feature("v", "vector", dim=3, default=[7, 7, 7])))
    np.testing.assert_array_equal(got[~missing], mat[idx[~missing]])
    np.testing.assert_array_equal(got[missing], 7)
    assert len(stream_vectors([], idx[:0], missing[:0], Feature("v", "vector", dim=3))) == 0
