"""Sampled negatives for positives-only logs (data.feedback=positive_only), drawn at split time.

For every CTR sample row (role "sample", all positives), `split.negatives.per_positive` items are drawn with
probability proportional to count**popularity_alpha, where count is how often the item occurs in TRAIN users' rows
only (valid/test behaviour never shapes the training data). A negative is never an item the user has interacted
with (at any time) nor a repeat of another negative of that user; draws that hit one are redrawn, a few rounds,
and the few left after that are dropped and counted. A negative takes its positive's user, time and split, label
0, rating NaN and `sampled` True, so the point-in-time join treats it exactly like a logged row. Seeded: the same
input and config give the same rows.

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


if __name__ == "__main__":
    demo = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 12, 13],
                         "timestamp": pd.to_datetime([1, 2, 1, 2, 1], unit="s", utc=True),
                         "role": ["history", "sample", "history", "sample", "sample"],
                         "split": ["train", "train", "train", "train", "test"]})
    print(sample_negatives(demo, NegativeSampling(per_positive=1))[0])
