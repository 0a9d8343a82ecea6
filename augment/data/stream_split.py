"""The split of a daily run (config `stream`): profile cutoffs that never move, and a forward-in-time CTR split.

A run sees the log as of its interval end `end` (every interaction before it) and nothing later.

Profiles. Each profile is one (user_id, cutoff) row: it is built from the user's last `split.history_max`
interactions strictly before `cutoff`, and a label at time t is joined to the newest profile with cutoff < t
(strictly; models/dataset_builder.py). Cutoffs depend only on the past, so a profile written yesterday is the
same row, the same prompt and (through the generation cache) the same text today:
- bootstrap (users with interactions before `stream.start`): KAR's rule on those interactions, the first
  min((n+1)//2, history_max) are the history, and the cutoff is the first time after the last of them (capped at
  `start`); the history rows are behaviour only, never labels;
- at every later interval end g (start + k * interval, up to `end`): a user gets a new profile at cutoff g when
  `refresh.min_new_interactions` arrived since the last cutoff, or when one did and the last profile is
  `refresh.max_age_days` old (a user without any profile: once they have min_new_interactions); what counts
  as new is what arrived after the user's last profile run (the bootstrap run accounts for everything before
  `start`).

CTR split by time, relative to `end`: test is the gate's window, the newest `test_intervals` intervals [end -
test_intervals * interval, end) (what the models of an earlier run would have served; one interval by default),
valid the `valid_intervals` intervals before it (model selection), train everything older.

    rows, cutoffs = stream_split(interactions, SplitConfig(), StreamConfig(start=..., end=...))
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from augment.data.split import sorted_by_user_time
from configs import SplitConfig, StreamConfig


def _us(t: datetime | pd.Timestamp) -> np.int64:
    return np.int64(pd.Timestamp(t).value // 1000)  # .value is always nanoseconds


def time_us(values: pd.Series) -> np.ndarray:
    """int64 microseconds since the epoch of a (tz-aware) timestamp column."""
    return pd.DatetimeIndex(values).as_unit("us").asi8


def _counts_below(ts: np.ndarray, starts: np.ndarray, bound: np.int64) -> np.ndarray:
    """Per user (rows grouped by user, time-sorted within), how many rows have ts < bound."""
    if not len(ts):
        return np.zeros(len(starts), dtype=np.int64)
    return np.add.reduceat((ts < bound).astype(np.int64), starts)


def rows_before(user_ids: np.ndarray, ts: np.ndarray, q_users: np.ndarray, q_ts: np.ndarray,
                side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """For each query (user, time): the index of the user's first row and the index just past the user's rows
    before that time (side "left": ts < t; "right": ts <= t), all queries at once. Rows are grouped by user in
    ascending user order and time-sorted within; the search runs on one monotone key of (user rank, dense time
    rank), as in models/history.py."""
    ids = np.unique(np.concatenate([user_ids, q_users]))
    times = np.unique(np.concatenate([ts, q_ts]))
    width = np.int64(len(times) + 1)
    key = np.searchsorted(ids, user_ids).astype(np.int64) * width + np.searchsorted(times, ts)
    if len(key) > 1 and (np.diff(key) < 0).any():
        raise ValueError("rows_before: rows must be sorted by user, then time")
    q_user = np.searchsorted(ids, q_users).astype(np.int64) * width
    first = np.searchsorted(key, q_user, side="left")
    return first, np.searchsorted(key, q_user + np.searchsorted(times, q_ts), side=side)


def profile_cutoffs(user_ids: np.ndarray, ts: np.ndarray, split: SplitConfig,
                    stream: StreamConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """(cutoffs: user_id, cutoff [us], n_new, n_history; per row, its user's bootstrap cutoff in us: int64 min for
    users who joined later, all of whose rows are labels).

    `user_ids`/`ts` (microseconds) are grouped by user and time-sorted within each user."""
    start = _us(stream.start)
    max_age = np.int64(round(stream.refresh.max_age_days * 86_400_000_000))
    k_min = stream.refresh.min_new_interactions
    none = np.iinfo(np.int64).max
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]]) if len(user_ids) else np.zeros(0, int)
    sizes = np.diff(np.r_[starts, len(user_ids)]).astype(np.int64)
    users = user_ids[starts]
    parts = []

    # Bootstrap: KAR's history rule on what happened before `start`.
    n_pre = _counts_below(ts, starts, start)
    n_hist = np.minimum((n_pre + 1) // 2, split.history_max)
    boot = n_hist > 0
    last_hist = ts[starts + np.maximum(n_hist, 1) - 1] if len(ts) else np.zeros(0, np.int64)
    # The first time after the last history row, so that its whole second is history (logs stamp many rows in
    # one second, in an unknown order).
    nxt = rows_before(user_ids, ts, users, last_hist, side="right")[1]
    after = np.where(nxt < starts + sizes, ts[np.minimum(nxt, max(len(ts) - 1, 0))] if len(ts) else 0, start)
    first_cut = np.where(boot, np.minimum(after, start), none)
    last_cut = first_cut.copy()
    # The bootstrap accounts for everything before `start`: what counts as new later is what came after it (its
    # profiles deliberately stop at the KAR cutoff so that the later rows can be labels).
    count_at = np.where(boot, n_pre, 0)
    parts.append(pd.DataFrame({"user_id": users[boot], "cutoff": first_cut[boot], "n_new": n_pre[boot]}))

    # Every interval end after the bootstrap: the refresh policy.
    for _, interval_end in stream.intervals():
        g = _us(interval_end)
        count = _counts_below(ts, starts, g)
        new = count - count_at
        has = last_cut != none
        due = (new >= k_min) | (has & (new >= 1) & (g - np.where(has, last_cut, g) >= max_age))
        if due.any():
            parts.append(pd.DataFrame({"user_id": users[due], "cutoff": np.full(int(due.sum()), g),
                                       "n_new": new[due]}))
            first_cut = np.where(due & ~has, g, first_cut)
            last_cut = np.where(due, g, last_cut)
            count_at = np.where(due, count, count_at)
    cut = pd.concat(parts, ignore_index=True).sort_values(["user_id", "cutoff"], kind="stable")
    cut = cut.reset_index(drop=True)
    first, end_row = rows_before(user_ids, ts, cut["user_id"].to_numpy(), cut["cutoff"].to_numpy(np.int64))
    below = end_row - first
    cut["n_history"] = np.minimum(below, split.history_max)  # the rows the profile is built from
    # Bootstrap users' rows before their first cutoff are their KAR history: behaviour only, never labels.
    row_first = np.repeat(np.where(boot, first_cut, np.iinfo(np.int64).min), sizes)
    return cut, row_first


def stream_split(interactions: pd.DataFrame, split: SplitConfig, stream: StreamConfig,
                 sample_negatives: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with role/split/sampled, sorted by user_id, timestamp, item_id; profile cutoffs, one row per
    (user_id, cutoff) with n_history, n_samples = the interactions new since the user's previous profile, split).
    With `sample_negatives` (positives-only logs) every sample row gets time-correct sampled negatives
    (augment/data/negatives.py); profiles and cutoffs are made from the logged rows only."""
    end = _us(stream.require_end())
    rows = sorted_by_user_time(interactions)
    ts = time_us(rows["timestamp"])
    late = np.flatnonzero(ts >= end)
    if len(late):
        bad = rows.iloc[int(late[0])]
        raise ValueError(f"interaction of user_id {bad.user_id} at {bad.timestamp} is not before this run's "
                         f"interval end {stream.end}: ingest filters the log to the interval")
    user_ids = rows["user_id"].to_numpy()
    cut, row_first = profile_cutoffs(user_ids, ts, split, stream)
    is_history = ts < row_first
    rows["role"] = pd.Series(np.where(is_history, "history", "sample"), dtype="str")
    test_from, valid_from = _us(stream.test_from), _us(stream.valid_from)
    rows["split"] = pd.Series(np.select([ts >= test_from, ts >= valid_from], ["test", "valid"], "train"),
                              dtype="str")
    rows["sampled"] = False
    if sample_negatives:
        from augment.data.negatives import sample_negatives_in_time

        negatives, dropped = sample_negatives_in_time(rows, split.negatives, _us(stream.start),
                                                      _us(stream.start + stream.interval) - _us(stream.start))
        rows = sorted_by_user_time(pd.concat([rows, negatives], ignore_index=True))
        rows.attrs["negatives"] = {"sampled": len(negatives), "dropped": dropped}
    cutoffs = pd.DataFrame({
        "user_id": cut["user_id"].to_numpy(),
        "cutoff": pd.to_datetime(cut["cutoff"].to_numpy(), unit="us", utc=True),
        "n_history": cut["n_history"].astype("int64").to_numpy(),
        "n_samples": cut["n_new"].astype("int64").to_numpy(),
        "split": pd.Series("stream", index=range(len(cut)), dtype="str"),
    })
    return rows, cutoffs
