"""Sampled negatives for positives-only logs (data.feedback=positive_only), drawn at split time.

For every CTR sample row (role "sample", all positives), `split.negatives.per_positive` items are drawn with
probability proportional to count**popularity_alpha, where count is how often the item occurs in TRAIN users' rows
only (valid/test behaviour never shapes the training data). A negative is never an item the user has interacted
with (at any time) nor a repeat of another negative of that user; draws that hit one are redrawn, a few rounds,
and the few left after that are dropped and counted. A negative takes its positive's user, time and split, label
0, rating NaN and `sampled` True, so the point-in-time join treats it exactly like a logged row. Seeded: the same
input and config give the same rows.

A daily run (config `stream`) draws them differently, so that a row's negatives never change as the log grows and
never use the future (`sample_negatives_in_time`): the pool of a row in interval k (on the stream's grid, which
extends back before `stream.start`) is every item logged before interval k starts, weighted by those counts; a
negative is never an item the user logged by the end of interval k (what the run that first labels the row knows);
and the draws come from a hash of the row (user, item, time, seed), not from a generator shared by all rows, so
the row gets the same negatives in every later run, whatever else the log holds.

    python -m augment.data.negatives      # a tiny worked example
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from configs.run_config import NegativeSampling

ROUNDS = 20


def sample_negatives(rows: pd.DataFrame, cfg: NegativeSampling) -> tuple[pd.DataFrame, int]:
    """(negative rows shaped like `rows`, how many draws were dropped); `rows` has user_id, item_id, timestamp,
    role and split columns."""
    train = rows.loc[rows["split"] == "train", "item_id"]
    if train.empty:
        raise ValueError("negative sampling needs train rows: split.fractions gives the train split no users")
    counts = train.value_counts(sort=False).sort_index()
    pool = counts.index.to_numpy(np.int64)
    weight = counts.to_numpy(np.float64) ** cfg.popularity_alpha
    cdf = np.cumsum(weight / weight.sum())
    positives = rows[rows["role"] == "sample"]
    k = cfg.per_positive
    user = np.repeat(positives["user_id"].to_numpy(np.int64), k)
    rng = np.random.default_rng(cfg.seed)
    seen = pd.MultiIndex.from_arrays([rows["user_id"].to_numpy(np.int64), rows["item_id"].to_numpy(np.int64)])
    item = np.empty(len(user), dtype=np.int64)
    todo = np.arange(len(user))
    for _ in range(ROUNDS):
        if not len(todo):
            break
        item[todo] = pool[np.searchsorted(cdf, rng.random(len(todo)), side="right").clip(max=len(pool) - 1)]
        pairs = pd.MultiIndex.from_arrays([user, item])
        bad = pairs.isin(seen) | pairs.duplicated(keep="first")
        todo = np.flatnonzero(bad)
    keep = np.ones(len(user), dtype=bool)
    keep[todo] = False
    out = pd.DataFrame({
        "user_id": user[keep], "item_id": item[keep],
        "rating": np.full(int(keep.sum()), np.nan, dtype=np.float32), "label": np.zeros(int(keep.sum()), np.int8),
        "timestamp": np.repeat(positives["timestamp"].to_numpy(), k)[keep],
        "role": "sample", "split": np.repeat(positives["split"].to_numpy(), k)[keep], "sampled": True,
    })
    out["timestamp"] = out["timestamp"].astype(rows["timestamp"].dtype)
    return out, int(len(todo))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise: a well-spread uint64 from any uint64 (wraps on purpose)."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_uniforms(keys: np.ndarray, draw: int) -> np.ndarray:
    """U[0, 1) per row key, a pure function of (key, draw)."""
    bits = _mix(keys ^ _mix(np.full(len(keys), draw, dtype=np.uint64)))
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def grid_index(ts_us: np.ndarray, start_us: int, step_us: int) -> np.ndarray:
    """The stream-grid interval of each time: k for [start + k * step, start + (k + 1) * step), negative before."""
    return np.floor_divide(np.asarray(ts_us, dtype=np.int64) - np.int64(start_us), np.int64(step_us))


def sample_negatives_in_time(rows: pd.DataFrame, cfg: NegativeSampling, start_us: int,
                             step_us: int) -> tuple[pd.DataFrame, int]:
    """Time-correct negatives for a daily run's rows (module docstring): (negative rows shaped like `rows`, draws
    dropped). `rows` holds user_id, item_id, timestamp, role and split, every logged row up to the run's end."""
    ts = pd.DatetimeIndex(rows["timestamp"]).as_unit("us").asi8
    k_row = grid_index(ts, start_us, step_us)
    users, items = rows["user_id"].to_numpy(np.int64), rows["item_id"].to_numpy(np.int64)
    catalogue, item_pos = np.unique(items, return_inverse=True)
    # when the user first logged each item: a negative is never one the user logged by its row's interval end
    first = pd.DataFrame({"u": users, "i": items, "k": k_row}).groupby(["u", "i"])["k"].min()
    pos = np.flatnonzero((rows["role"] == "sample").to_numpy())
    per = cfg.per_positive
    row_key = _mix(_mix(_mix(users[pos].astype(np.uint64)) ^ items[pos].astype(np.uint64))
                   ^ ts[pos].astype(np.uint64)) ^ _mix(np.uint64(cfg.seed))
    drawn = np.full((len(pos), per), -1, dtype=np.int64)
    order = np.argsort(k_row, kind="stable")
    sorted_k = k_row[order]
    counts = np.zeros(len(catalogue), dtype=np.float64)
    done = 0
    for k in np.unique(k_row[pos]):
        upto = int(np.searchsorted(sorted_k, k, side="left"))
        np.add.at(counts, item_pos[order[done:upto]], 1.0)  # popularity known when interval k starts
        done = upto
        known = np.flatnonzero(counts > 0)
        if not len(known):
            continue  # nothing logged before this interval: no pool, the rows' draws are dropped
        cdf = np.cumsum(counts[known] ** cfg.popularity_alpha)
        cdf /= cdf[-1]
        mine = np.flatnonzero(k_row[pos] == k)
        for j in range(per):
            todo, key = mine, _mix(row_key[mine] ^ np.uint64(j))
            for r in range(ROUNDS):
                if not len(todo):
                    break
                u = row_uniforms(key, r)
                cand = catalogue[known[np.searchsorted(cdf, u, side="right").clip(max=len(known) - 1)]]
                seen_k = first.reindex(pd.MultiIndex.from_arrays([users[pos[todo]], cand])).to_numpy()
                bad = (~np.isnan(seen_k) & (seen_k <= k)) | (drawn[todo, :j] == cand[:, None]).any(axis=1)
                drawn[todo[~bad], j] = cand[~bad]
                todo, key = todo[bad], key[bad]
    keep = drawn.reshape(-1) >= 0
    src = np.repeat(pos, per)[keep]
    out = pd.DataFrame({
        "user_id": users[src], "item_id": drawn.reshape(-1)[keep],
        "rating": np.full(int(keep.sum()), np.nan, dtype=np.float32), "label": np.zeros(int(keep.sum()), np.int8),
        "timestamp": rows["timestamp"].to_numpy()[src],
        "role": "sample", "split": rows["split"].to_numpy()[src], "sampled": True,
    })
    out["timestamp"] = out["timestamp"].astype(rows["timestamp"].dtype)
    return out, int((~keep).sum())


if __name__ == "__main__":
    demo = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 13],
                         "timestamp": pd.to_datetime([1, 2, 1, 2, 1], unit="s", utc=True),
                         "role": ["history", "sample", "history", "sample", "sample"],
                         "split": ["train", "train", "train", "train", "test"]})
    print(sample_negatives(demo, NegativeSampling(per_positive=1))[0])
