"""Generic datasets as real logs come: string ids, implicit feedback, duplicates, rating ranges, '007' vs '7'.

Each dataset is written in code; every failure is one DataError line naming file, line and column."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from augment.data.errors import DataError
from augment.data.ingest import load_generic
from augment.data.split import split_interactions
from common.id_keys import KEY_MASK, key_of, string_keys
from configs import ColumnMap, DataConfig, GenericSource, SplitConfig

ASIN = ["B00004TKSE", "B0000AQS0F", "B00005JNBQ", "B000I2JFQU"]
HASH = ["9d95d0956601ed05785c48fdada5f8af", "0cc175b9c0f1b6a831c399e269772661", "92eb5ffee6ae2fec3ad71c777531578f"]


def _write(root, ratings: str, items: str, **data) -> DataConfig:
    (root / "log.csv").write_text(ratings, encoding="utf-8")
    (root / "items.csv").write_text(items, encoding="utf-8")
    inter_cols = {"user_id": "user", "item_id": "item", "timestamp": "ts"}
    inter_cols.update(data.pop("inter_cols", {"rating": "stars"}))
    return DataConfig(source="generic", generic=GenericSource(
        interactions=ColumnMap(path=str(root / "log.csv"), columns=inter_cols),
        items=ColumnMap(path=str(root / "items.csv"), columns={"item_id": "id", "title": "name"})), **data)


def _items(ids=ASIN) -> str:
    return "id,name\n" + "".join(f"{i},Title of {i}\n" for i in ids)


def _error(cfg: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        load_generic(cfg)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_string_ids_get_stable_keys_and_id_maps(tmp_path):
    log = "user,item,stars,ts\n" + "".join(f"{u},{i},4,{t}\n" for t, (u, i) in enumerate(
        [(HASH[0], ASIN[0]), (HASH[0], ASIN[1]), (HASH[1], ASIN[2]), (HASH[2], ASIN[3])]))
    c = load_generic(_write(tmp_path, log, _items()))
    assert c.stats["user_id_type"] == "string" and c.stats["item_id_type"] == "string"
    items = c.id_maps["item"].set_index("source_id")["item_id"]
    assert sorted(items.index) == sorted(ASIN)
    # the key is a pure function of the original id: serving computes it without a lookup table
    assert all(items[a] == key_of(a, "string") for a in ASIN)
    assert all(0 <= k <= KEY_MASK for k in items)
    assert set(c.interactions["item_id"]) == set(items) and set(c.items["item_id"]) == set(items)
    assert set(c.id_maps["user"]["source_id"]) == set(HASH)
    # the same ids in another run, another order: the same keys
    assert list(string_keys(__import__("pyarrow").array(ASIN[::-1]))) == [items[a] for a in ASIN[::-1]]


def test_int_ids_keep_their_values(tmp_path):
    c = load_generic(_write(tmp_path, "user,item,stars,ts\n5,10,4,1\n5,20,3,2\n", _items(["10", "20"])))
    assert c.stats["item_id_type"] == "int" and sorted(c.items["item_id"]) == [10, 20]
    assert c.id_maps["item"]["source_id"].tolist() == ["10", "20"]


def test_leading_zeros_are_not_merged_with_the_number(tmp_path):
    """'007' in the catalogue and '7' in the log are different ids: inferred string, and the log's 7 is unknown."""
    msg = _error(_write(tmp_path, "user,item,stars,ts\n1,007,4,1\n1,7,5,2\n", _items(["007", "8"])))
    assert re.search(r"log\.csv: line 3: column 'item': item_id '7' not found in .*items\.csv", msg), msg


def test_declared_int_ids_reject_non_canonical_integers(tmp_path):
    cfg = _write(tmp_path, "user,item,stars,ts\n1,7,4,1\n", _items(["007"]), id_types={"item": "int"})
    msg = _error(cfg)
    assert re.search(r"items\.csv: line 2: column 'id': not a canonical integer id: '007'", msg), msg


def test_unknown_string_id_is_quoted_in_the_error(tmp_path):
    msg = _error(_write(tmp_path, f"user,item,stars,ts\nu1,{ASIN[0]},4,1\nu1,B0NOTEXIST,4,2\n", _items()))
    assert "line 3: column 'item': item_id 'B0NOTEXIST' not found" in msg, msg


def test_exact_duplicates_are_dropped_and_counted(tmp_path):
    log = "user,item,stars,ts\nu1,B00004TKSE,4,1\nu1,B00004TKSE,4,1\r\nu2,B0000AQS0F,2,1\nu1,B00004TKSE,4,1\n"
    c = load_generic(_write(tmp_path, log, _items()))
    assert len(c.interactions) == 2 and c.stats["duplicates_dropped"] == 2 and c.stats["rows_read"] == 4


def test_exact_duplicates_error_by_policy(tmp_path):
    log = "user,item,stars,ts\nu1,B00004TKSE,4,1\nu2,B0000AQS0F,2,1\nu1,B00004TKSE,4,1\n"
    msg = _error(_write(tmp_path, log, _items(), duplicates="error"))
    assert "log.csv: column 'user,item,ts': duplicate interaction ('u1', 'B00004TKSE'" in msg, msg
    assert "at line 2 and line 4" in msg


def test_conflicting_duplicates_name_both_lines(tmp_path):
    log = "user,item,stars,ts\nu1,B00004TKSE,4,1\nu2,B0000AQS0F,2,1\nu1,B00004TKSE,5,1\n"
    msg = _error(_write(tmp_path, log, _items()))
    assert re.search(r"log\.csv: column 'stars': conflicting duplicate interaction \('u1', 'B00004TKSE', .*\) at "
                     r"line 2 and line 4: same user, item and time, different rating", msg), msg


def test_rating_range(tmp_path):
    log = "user,item,stars,ts\nu1,B00004TKSE,4,1\nu1,B0000AQS0F,11,2\n"
    msg = _error(_write(tmp_path, log, _items(), rating_range=(1, 5)))
    assert msg.endswith("log.csv: line 3: column 'stars': rating 11 outside data.rating_range [1, 5]"), msg
    assert len(load_generic(_write(tmp_path, log, _items())).interactions) == 2  # no range declared: accepted


def test_label_column_feedback(tmp_path):
    log = "user,item,clicked,ts\nu1,B00004TKSE,1,1\nu1,B0000AQS0F,0,2\nu2,B0000AQS0F,true,3\n"
    c = load_generic(_write(tmp_path, log, _items(), feedback="label", inter_cols={"label": "clicked"}))
    assert sorted(c.interactions["label"].tolist()) == [0, 1, 1] and c.interactions["rating"].isna().all()
    bad = "user,item,clicked,ts\nu1,B00004TKSE,1,1\nu1,B0000AQS0F,yes please,2\n"
    msg = _error(_write(tmp_path, bad, _items(), feedback="label", inter_cols={"label": "clicked"}))
    assert "line 3: column 'clicked': not a 0/1 label: 'yes please'" in msg, msg


def test_event_feedback(tmp_path):
    log = "user,item,action,ts\nu1,B00004TKSE,view,1\nu1,B0000AQS0F,purchase,2\nu2,B0000AQS0F,cart,3\n"
    cfg = _write(tmp_path, log, _items(), feedback="event", positive_events=["purchase", "cart"],
                 inter_cols={"event": "action"})
    c = load_generic(cfg)
    assert c.interactions.sort_values("timestamp")["label"].tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="positive_events"):
        DataConfig(source="generic", generic=cfg.generic, feedback="event")


def _positives_only_log(root, n_users=80, n_items=300, per_user=4, seed=0) -> DataConfig:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)
    rows = ["user,item,ts"]
    for u in range(n_users):
        for k, i in enumerate(rng.choice(n_items, size=per_user, replace=False, p=pop / pop.sum())):
            rows.append(f"user-{u:03d},SKU-{i:04d},{1000 * u + k}")
    return _write(root, "\n".join(rows) + "\n", _items([f"SKU-{i:04d}" for i in range(n_items)]),
                  feedback="positive_only", inter_cols={})


def test_positives_only_log_gets_seeded_popularity_negatives(tmp_path):
    c = load_generic(_positives_only_log(tmp_path))
    assert (c.interactions["label"] == 1).all()
    cfg = SplitConfig(seed=3, negatives={"per_positive": 3, "seed": 7, "popularity_alpha": 1.0})
    rows, cutoffs = split_interactions(c.interactions, cfg, sample_negatives=True)
    again, _ = split_interactions(c.interactions, cfg, sample_negatives=True)
    pd.testing.assert_frame_equal(rows, again)  # seeded
    neg, logged = rows[rows["sampled"]], rows[~rows["sampled"]]
    assert len(logged) == len(c.interactions) and (neg["label"] == 0).all() and (neg["role"] == "sample").all()
    positives = logged[logged["role"] == "sample"]
    assert len(neg) + rows.attrs["negatives"]["dropped"] == 3 * len(positives)
    # never an item the user interacted with, never twice for one user
    seen = set(zip(c.interactions["user_id"], c.interactions["item_id"]))
    assert not any((u, i) in seen for u, i in zip(neg["user_id"], neg["item_id"]))
    assert not neg.duplicated(["user_id", "item_id"]).any()
    # only items seen in TRAIN rows are drawn (valid/test behaviour never shapes the training data)
    train_items = set(logged.loc[logged["split"] == "train", "item_id"])
    assert set(neg["item_id"]) <= train_items
    # popularity-aware: train-popular items are drawn more often than train-rare ones
    train_counts = logged.loc[logged["split"] == "train", "item_id"].value_counts()
    draws = neg["item_id"].value_counts().reindex(train_counts.index, fill_value=0)
    assert draws[train_counts >= train_counts.quantile(0.8)].mean() > 2 * draws[train_counts <= 2].mean()
    # a negative takes its positive's user, time and split
    pos_keys = set(zip(positives["user_id"], positives["timestamp"], positives["split"]))
    assert set(zip(neg["user_id"], neg["timestamp"], neg["split"])) <= pos_keys
    assert (cutoffs["n_samples"].sum()) == len(positives)  # cutoffs count logged rows only


def test_store_export_speaks_original_ids(tmp_path, make_tiny_config):
    """`python -m feature_store export` writes a table with the ids of the source files, not the keys."""
    import subprocess
    import sys

    from augment import stages
    from configs import REPO_ROOT, load_config

    cfg = load_config(make_tiny_config(tmp_path, **{"data.id_types": {"item": "string"}}))
    versions = stages.ingest(cfg)
    versions.update(stages.split(cfg, versions))
    out = tmp_path / "splits.csv"
    root = cfg.workdir_path / "feature_store"
    done = subprocess.run([sys.executable, "-m", "feature_store", "--root", str(root), "export",
                           f"interaction_splits@{versions['interaction_splits']}", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out, dtype=str)
    source = pd.read_csv(tmp_path / "data" / "ratings.csv", dtype=str)
    assert set(frame["item_id"]) == set(source["movie"]) and set(frame["user_id"]) == set(source["user"])
    assert len(frame) == len(source)


def test_a_key_collision_names_both_ids(tmp_path, monkeypatch):
    """Two string ids with one key (a stand-in hash that maps everything to 7) are an error, never a merge."""
    import augment.data.canonical as canonical  # where ids become keys

    real = canonical.keys_for
    monkeypatch.setattr(canonical, "keys_for",
                        lambda values, id_type: np.full(len(values), 7, np.int64) if id_type == "string"
                        else real(values, id_type))
    msg = _error(_write(tmp_path, f"user,item,stars,ts\n1,{ASIN[0]},4,1\n1,{ASIN[1]},5,2\n", _items(ASIN[:2])))
    assert "item ids" in msg and "hash to the same key" in msg, msg
    assert ASIN[0] in msg and ASIN[1] in msg
