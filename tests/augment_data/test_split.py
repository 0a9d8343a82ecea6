"""KAR time split: history before the cutoff, samples after; seeded whole-user train/valid/test assignment."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from augment.data.split import assign_users, split_interactions
from configs import SplitConfig


def _interactions(per_user: dict[int, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), float(rng.integers(1, 6)), int(rng.integers(0, 50)))  # coarse times: many ties
            for u, n in per_user.items() for i in rng.choice(1000, size=n, replace=False)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="D", utc=True).astype("datetime64[us, UTC]")
    df["label"] = (df["rating"] >= 4).astype("int8")
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)  # input order must not matter


def test_counts_and_roles():
    inter = _interactions({1: 1, 2: 2, 3: 5, 4: 100, 5: 61})
    rows, cut = split_interactions(inter, SplitConfig(history_max=30))
    c = cut.set_index("user_id")
    assert c["n_history"].to_dict() == {1: 1, 2: 1, 3: 3, 4: 30, 5: 30}
    assert c["n_samples"].to_dict() == {1: 0, 2: 1, 3: 2, 4: 70, 5: 31}
    assert (rows.groupby(["user_id", "role"]).size().unstack(fill_value=0)["history"] == c["n_history"]).all()
    assert len(rows) == len(inter) and set(rows["role"]) == {"history", "sample"}
    assert list(cut.columns) == ["user_id", "cutoff", "n_history", "n_samples", "split"]
    assert str(cut["cutoff"].dtype) == "datetime64[us, UTC]"


def test_no_sample_before_cutoff_and_history_is_earliest():
    inter = _interactions({u: n for u, n in zip(range(1, 60), range(1, 120, 2))}, seed=3)
    rows, cut = split_interactions(inter, SplitConfig(history_max=10))
    merged = rows.merge(cut[["user_id", "cutoff"]], on="user_id")
    samples = merged[merged["role"] == "sample"]
    assert (samples["timestamp"] >= samples["cutoff"]).all()
    hist = merged[merged["role"] == "history"]
    assert (hist["timestamp"] <= hist["cutoff"]).all()
    # Within a user, all history rows precede all sample rows in (time, item_id) order.
    for _, g in rows.groupby("user_id"):
        order = g.sort_values(["timestamp", "item_id"])["role"].tolist()
        assert order == sorted(order)  # "history" < "sample"
        assert g.index.is_monotonic_increasing


def test_tie_break_by_item_id():
    ts = pd.Timestamp("2000-01-01", tz="UTC")
    inter = pd.DataFrame({"user_id": [7, 7, 7, 7], "item_id": [40, 10, 30, 20], "rating": [1.0] * 4,
                          "timestamp": [ts] * 4})
    rows, _ = split_interactions(inter, SplitConfig())
    assert rows["item_id"].tolist() == [10, 20, 30, 40]
    assert rows["role"].tolist() == ["history", "history", "sample", "sample"]


def test_user_split_fractions_and_determinism():
    inter = _interactions({u: 3 for u in range(1, 1001)}, seed=1)
    a_rows, a = split_interactions(inter, SplitConfig(seed=42))
    b_rows, b = split_interactions(inter, SplitConfig(seed=42))
    _, other = split_interactions(inter, SplitConfig(seed=43))
    pd.testing.assert_frame_equal(a_rows, b_rows)
    pd.testing.assert_frame_equal(a, b)
    assert a["split"].value_counts().to_dict() == {"train": 800, "valid": 100, "test": 100}
    assert not a["split"].equals(other["split"])
    # Every row of a user carries that user's split.
    assert (a_rows.merge(a, on="user_id", suffixes=("", "_u")).eval("split == split_u")).all()


def test_assign_users_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        assign_users(np.arange(10), (0.8, 0.1, 0.2), seed=0)
    small = assign_users(np.array([5, 3, 9]), (0.8, 0.1, 0.1), seed=0)
    assert sorted(small.index) == [3, 5, 9] and set(small) <= {"train", "valid", "test"}


def test_on_ml100k(ml100k):
    rows, cut = split_interactions(ml100k.interactions, SplitConfig())
    assert len(cut) == 943 and cut["n_history"].max() == 30 and cut["n_history"].min() >= 10
    assert cut["n_history"].sum() + cut["n_samples"].sum() == 100000
    assert cut["split"].value_counts().to_dict() == {"train": 754, "valid": 95, "test": 94}
