"""Sampled negatives in a daily run (augment/data/negatives.py sample_negatives_in_time, via stream_split): drawn
from what was known at the label's time, never from the future, and the same for a row in every later run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from augment.data.stream_split import stream_split, time_us
from configs import SplitConfig, StreamConfig

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2026-01-10", tz="UTC")


def _implicit_log(days: int = 14, users: int = 40, seed: int = 0) -> pd.DataFrame:
    """Positives only, from day -5 to day `days` - 6 around START; every day brings a few items first seen that day."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        day = START + (d - 5) * DAY
        for u in rng.choice(users, size=users // 2, replace=False):
            for item in rng.choice(10 + 3 * d, size=2, replace=False):  # items 10 + 3d.. appear on day d
                rows.append((int(u), int(item), day + pd.Timedelta(minutes=int(rng.integers(1440)))))
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates(["user_id", "item_id"])
    log["timestamp"] = log["timestamp"].astype("datetime64[us, UTC]")
    log["rating"] = np.float32(np.nan)
    log["label"] = np.int8(1)
    return log


def _split(log: pd.DataFrame, end: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    stream = StreamConfig(start=START.to_pydatetime(), end=end.to_pydatetime(), valid_intervals=1)
    split = SplitConfig(negatives={"per_positive": 3, "seed": seed})
    rows, _ = stream_split(log[log["timestamp"] < end], split, stream, sample_negatives=True)
    return rows


@pytest.mark.timeout(60)
def test_a_rows_negatives_never_change_as_the_log_grows():
    log = _implicit_log()
    day3, day7 = _split(log, START + 3 * DAY), _split(log, START + 7 * DAY)
    cols = ["user_id", "item_id", "timestamp", "label", "sampled"]
    old = day3.loc[day3["sampled"], cols].reset_index(drop=True)
    again = day7.loc[day7["sampled"] & (day7["timestamp"] < START + 3 * DAY), cols].reset_index(drop=True)
    assert len(old) > 100
    pd.testing.assert_frame_equal(old, again)  # four more days of log: the same negatives for the old rows
    pd.testing.assert_frame_equal(day7, _split(log, START + 7 * DAY))  # and a re-run is identical
    assert not _split(log, START + 7 * DAY, seed=1)[cols].equals(day7[cols])  # the seed is used


@pytest.mark.timeout(60)
def test_negatives_come_from_the_past_and_never_from_the_users_own_items():
    log = _implicit_log()
    rows = _split(log, START + 7 * DAY)
    neg, logged = rows[rows["sampled"]], rows[~rows["sampled"]]
    day = lambda t: np.floor_divide(time_us(t) - time_us(pd.Series([START]))[0], 86_400_000_000)  # noqa: E731
    first_seen = logged.assign(k=day(logged["timestamp"])).groupby("item_id")["k"].min()
    k_neg = day(neg["timestamp"])
    # every negative item was logged (by someone) in an interval before its row's interval: known at the time
    assert (first_seen.reindex(neg["item_id"]).to_numpy() < k_neg).all()
    # never an item the user logged by the end of the row's interval (the future may hold it: not known then)
    mine = logged.assign(k=day(logged["timestamp"])).groupby(["user_id", "item_id"])["k"].min()
    seen = mine.reindex(pd.MultiIndex.from_arrays([neg["user_id"], neg["item_id"]])).to_numpy()
    assert not (~np.isnan(seen) & (seen <= k_neg)).any()
    # three distinct negatives per positive, at its time and split, label 0
    per_row = neg.groupby(["user_id", "timestamp"])["item_id"]
    assert (per_row.nunique() == per_row.size()).all()
    assert set(neg["label"]) == {0} and neg["rating"].isna().all()
    pos = logged[logged["role"] == "sample"].set_index(["user_id", "timestamp"])["split"]
    key = pd.MultiIndex.from_arrays([neg["user_id"], neg["timestamp"]])
    assert (pos.groupby(level=[0, 1]).first().reindex(key).to_numpy() == neg["split"].to_numpy()).all()
    # most rows get all three; only the first interval of the log has no pool
    assert len(neg) > 0.8 * 3 * (logged["role"] == "sample").sum()
