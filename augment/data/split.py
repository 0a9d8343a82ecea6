"""Per-user time split (KAR's leakage rule) plus a seeded train/valid/test assignment of users.

For each user, in time order (ties broken by item_id), the first n = min((len+1)//2, history_max) interactions are
the prompt history (role "history"); the later ones are CTR samples (role "sample"). The LLM only ever sees history,
so no sample's label leaks into the text features trained on it. Whole users go to train/valid/test by a seeded
permutation with ``cfg.fractions``, so valid/test users are unseen at training time. For a positives-only log the
sample rows get sampled negatives (augment/data/negatives.py, `sampled` True); history never includes them.

    python -m augment.data.split            # split ML-100K (cached wheel in var/cache) and print the counts
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from augment.data.sorting import int_columns, lexsorted
from configs import SplitConfig

SPLITS = ("train", "valid", "test")


def assign_users(user_ids: np.ndarray, fractions: tuple[float, float, float], seed: int) -> pd.Series:
    """user_id -> "train"/"valid"/"test"; sizes are the rounded cumulative fractions of the user count."""
    fr = np.asarray(fractions, dtype=float)
    if len(fr) != 3 or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"split.fractions must be three non-negative numbers summing to 1, got {fractions}")
    ids = np.sort(np.asarray(user_ids))
    bounds = np.round(np.cumsum(fr) * len(ids)).astype(int)
    rank = np.empty(len(ids), dtype=int)
    rank[np.random.default_rng(seed).permutation(len(ids))] = np.arange(len(ids))
    labels = np.asarray(SPLITS)[np.searchsorted(bounds, rank, side="right").clip(max=2)]
    return pd.Series(labels, index=pd.Index(ids, name="user_id"), name="split", dtype="str")


def sorted_by_user_time(interactions: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by user_id, timestamp, item_id with a RangeIndex; ingest already writes them in this order, so
    usually nothing is sorted (a 10M-row sort saved)."""
    order = ["user_id", "timestamp", "item_id"]
    cols = int_columns(interactions, order)
    if cols is not None and lexsorted(cols):
        return interactions.reset_index(drop=True)
    return interactions.sort_values(order, kind="stable").reset_index(drop=True)


def split_interactions(interactions: pd.DataFrame, cfg: SplitConfig,
                       sample_negatives: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with ``role``, ``split`` and ``sampled`` columns, per-user cutoffs).

    Rows come back sorted by user_id, timestamp, item_id with a RangeIndex. The cutoffs frame has user_id,
    cutoff (timestamp of the last history row, tz-aware UTC), n_history, n_samples (logged rows), split.
    With ``sample_negatives`` (positives-only logs) every sample row gets ``cfg.negatives.per_positive``
    sampled negatives.
    """
    rows = sorted_by_user_time(interactions)
    by_user = rows.groupby("user_id", sort=False)
    position = by_user.cumcount().to_numpy()
    size = by_user["user_id"].transform("size").to_numpy()
    n_hist = np.minimum((size + 1) // 2, cfg.history_max)
    is_history = position < n_hist
    rows["role"] = pd.Series(np.where(is_history, "history", "sample"), dtype="str")
    split = assign_users(rows["user_id"].unique(), cfg.fractions, cfg.seed)
    rows["split"] = split.reindex(rows["user_id"]).to_numpy()
    rows["split"] = rows["split"].astype("str")

    hist = rows[is_history].groupby("user_id", sort=True)
    cutoffs = pd.DataFrame({
        "cutoff": hist["timestamp"].max(),
        "n_history": hist.size().astype("int64"),
    })
    counts = rows.groupby("user_id", sort=True).size()
    cutoffs["n_samples"] = (counts - cutoffs["n_history"]).astype("int64")
    cutoffs["split"] = split.reindex(cutoffs.index).astype("str")
    rows["sampled"] = False
    if sample_negatives:
        from augment.data.negatives import sample_negatives as draw

        negatives, dropped = draw(rows, cfg.negatives)
        rows = pd.concat([rows, negatives], ignore_index=True)
        rows = rows.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
        rows.attrs["negatives"] = {"sampled": len(negatives), "dropped": dropped}
    return rows, cutoffs.reset_index()


if __name__ == "__main__":
    from pathlib import Path

    from augment.data.ingest import load_movielens100k
    from configs import DataConfig

    canon = load_movielens100k(DataConfig(), Path("var/cache"))
    rows, cut = split_interactions(canon.interactions, SplitConfig())
    print(rows.groupby(["split", "role"]).size().unstack())
    print(cut.groupby("split")[["n_history", "n_samples"]].agg(["count", "sum", "mean"]))
