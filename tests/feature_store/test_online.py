"""Online lookup: latest row per key, defaults + counting for unknown keys, composite keys, atomic reload."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from feature_store import Feature, OnlineStore, OnlineTable, TableSpec, vector_matrix


def test_latest_row_per_key_and_unknown_keys(store, item_spec, make_items):
    df = make_items(n_items=30, n_times=3)
    ref = store.publish(item_spec, df.sample(frac=1, random_state=0), recipe={"r": 1})  # shuffled rows
    t = OnlineTable.load(store, "item_emb", ref.version)
    assert t.version == ref.version and t.num_rows == 30
    last = df[df["event_timestamp"] == df["event_timestamp"].max()].set_index("item_id")
    keys = np.array([5, 0, 29, 1000, -1, 5])
    got = t.get_vectors("emb", keys)
    assert got.shape == (6, 8) and got.dtype == np.float32
    np.testing.assert_array_equal(got[[0, 1, 2, 5]], np.stack(last.loc[[5, 0, 29, 5], "emb"]))
    np.testing.assert_array_equal(got[[3, 4]], 0)
    assert t.unknown_count == 2
    full = t.get([29, 77], with_missing=True)
    assert full["__missing"].tolist() == [False, True]
    assert full["title"].tolist() == ["item 29", "?"]
    assert full["pop"][1] == -1.0 and full["pop"][0] == pytest.approx(last.loc[29, "pop"])
    assert t.unknown_count == 3
    with pytest.raises(ValueError, match="integers"):
        t.get_vectors("emb", ["a"])
    with pytest.raises(ValueError, match="not a vector"):
        t.get_vectors("pop", [1])


def test_composite_and_string_keys(store):
    spec = TableSpec("uc", "user", ("user_id", "ctx"), (Feature("v", "vector", dim=2, default=[-1, -1]),
                     Feature("n", "int64")), key_dtypes={"ctx": "string"}, created_timestamp=None)
    df = pd.DataFrame({"user_id": [1, 1, 2, 1], "ctx": ["a", "b", "a", "a"],
                       "event_timestamp": pd.to_datetime([1, 1, 1, 5], unit="s", utc=True),
                       "v": [np.array([1, 1]), np.array([2, 2]), np.array([3, 3]), np.array([4, 4])],
                       "n": [1, 2, 3, 4]})
    store.publish(spec, df, recipe={"r": 1})
    t = OnlineTable.load(store, "uc", "latest")
    np.testing.assert_array_equal(t.get_vectors("v", [(1, "a"), (2, "b"), (1, "b")]), [[4, 4], [-1, -1], [2, 2]])
    got = t.get([(2, "a"), (9, "z")])
    assert got["n"].tolist() == [3, 0]  # ints without a default fall back to 0 (see __missing)
    s = TableSpec("s", "item", ("sku",), (Feature("v", "vector", dim=1),), key_dtypes={"sku": "string"},
                  event_timestamp=None, created_timestamp=None)
    store.publish(s, pd.DataFrame({"sku": ["x", "y"], "v": [np.array([1.0]), np.array([2.0])]}), recipe={"r": 1})
    np.testing.assert_array_equal(OnlineTable.load(store, "s", "latest").get_vectors("v", ["y", "q"]), [[2], [0]])


def test_online_store_reload_swaps_atomically(store, item_spec, make_items):
    a = store.publish(item_spec, make_items(gen=1.0), recipe={"r": 1})
    b = store.publish(item_spec, make_items(gen=2.0), recipe={"r": 2})
    online = OnlineStore(store, {"item_emb": a.version})
    first = online.table("item_emb")
    assert online.pins == {"item_emb": a.version}
    online.reload({"item_emb": a.version})
    assert online.table("item_emb") is first  # unchanged pin: no reload
    seen, stop = set(), threading.Event()

    def serve() -> None:
        while not stop.is_set():
            seen.add(float(online.table("item_emb").get_vectors("emb", [3])[0, 0]))

    th = threading.Thread(target=serve)
    th.start()
    for i in range(20):
        online.reload({"item_emb": b.version if i % 2 == 0 else a.version})
    stop.set()
    th.join()
    assert seen <= {1.0, 2.0}
    with pytest.raises(KeyError, match="no table 'nope'"):
        online.table("nope")


def test_online_matches_offline_latest(store, item_spec, make_items):
    ref = store.publish(item_spec, make_items(n_items=50), recipe={"r": 1})
    t = store.read("item_emb", ref.version).to_pandas()
    latest = t.sort_values("event_timestamp").groupby("item_id").tail(1).set_index("item_id").sort_index()
    online = OnlineTable.load(store, "item_emb", ref.version)
    np.testing.assert_array_equal(online.get_vectors("emb", latest.index.to_numpy()), np.stack(latest["emb"]))
    assert vector_matrix  # exported helper used by callers alongside the online table
