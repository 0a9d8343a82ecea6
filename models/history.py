"""Each sample's recent-item history (DIN's behaviour sequence): the user's items strictly BEFORE the sample's time.

Events are all interactions we may look at (prompt history and every CTR sample, of all splits); for a query
(user, t) the history is the user's last `max_len` items with event time < t, oldest first, padded with 0 at the
end, plus its length. Ties at the same timestamp are excluded (MovieLens logs many ratings in one second, and
their order within it is unknown), so neither the sample itself nor anything simultaneous or later leaks in.

Vectorised: events are sorted by (user, time) once; a query's end position is a searchsorted on the combined
key (user rank, time rank), and the window is gathered with one fancy-index per slot.

    from models.history import recent_items
    hist, lengths = recent_items(ev_users, ev_items, ev_times, q_users, q_times, max_len=20)
"""
from __future__ import annotations

import numpy as np


def _as_int64_time(t: np.ndarray) -> np.ndarray:
    arr = np.asarray(t)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]").astype(np.int64)
    if arr.dtype.kind == "O":  # pandas tz-aware timestamps arrive as objects from .to_numpy()
        import pandas as pd

        return np.asarray(pd.DatetimeIndex(pd.to_datetime(arr, utc=True)).as_unit("us").asi8, dtype=np.int64)
    return arr.astype(np.int64)


def recent_items(ev_users: np.ndarray, ev_items: np.ndarray, ev_times: np.ndarray, q_users: np.ndarray,
                 q_times: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_queries, max_len) int64 item ids (0 = padding, after the valid prefix) and (n_queries,) lengths."""
    if max_len < 1:
        raise ValueError(f"recent_items: max_len must be >= 1, got {max_len}")
    ev_users, q_users = np.asarray(ev_users), np.asarray(q_users)
    ev_items = np.asarray(ev_items, dtype=np.int64)
    ev_t, q_t = _as_int64_time(ev_times), _as_int64_time(q_times)
    if not (len(ev_users) == len(ev_items) == len(ev_t)):
        raise ValueError("recent_items: event users/items/times differ in length")
    if len(q_users) != len(q_t):
        raise ValueError("recent_items: query users/times differ in length")
    n = len(q_users)
    hist = np.zeros((n, max_len), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    if n == 0 or len(ev_users) == 0:
        return hist, lengths
    # dense ranks make one exact int64 key per (user, time); queries' users/times share the events' rank space
    users = np.unique(np.concatenate([ev_users, q_users]))
    times = np.unique(np.concatenate([ev_t, q_t]))
    width = np.int64(len(times) + 1)
    ev_key = np.searchsorted(users, ev_users).astype(np.int64) * width + np.searchsorted(times, ev_t)
    q_user_rank = np.searchsorted(users, q_users).astype(np.int64)
    q_key = q_user_rank * width + np.searchsorted(times, q_t)
    order = np.argsort(ev_key, kind="stable")
    ev_key, ev_items = ev_key[order], ev_items[order]
    end = np.searchsorted(ev_key, q_key, side="left")  # first event at or after (user, t): excluded
    start = np.searchsorted(ev_key, q_user_rank * width, side="left")  # the user's first event
    lengths = np.minimum(end - start, max_len)
    first = end - lengths
    for slot in range(max_len):
        ok = slot < lengths
        hist[ok, slot] = ev_items[first[ok] + slot]
    return hist, lengths.astype(np.int64)
