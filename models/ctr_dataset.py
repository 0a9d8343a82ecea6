"""Build the CTR training data from the feature store: labels joined to features as of each label's time.

Labels are the `role == "sample"` rows of `interaction_splits` (everything after each user's prompt-history
cutoff). User/item attributes are static joins; vector tables go through the point-in-time join, so a user
profile written at the user's cutoff can never be joined to a label from before it. Each sample also gets the
user's recent items strictly before its timestamp (DIN's sequence; models/history.py), taken from ALL rows of
`interaction_splits` (prompt history and earlier samples of any split), never the sample itself or later ones.

    python -m models dataset --config configs/ml100k.yaml     # prints row counts and joined table versions
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from feature_store import FeatureStore, point_in_time_join, vector_matrix
from models.ctr_data import CtrData, CtrSplit
from models.history import recent_items

log = logging.getLogger(__name__)

VECTOR_TABLES = ("item_raw_emb", "item_knowledge_emb", "user_profile_emb")
# kept for callers of the first version; the full ablation lives in models/variants.py
VARIANTS: dict[str, list[str]] = {
    "base": [],
    "raw_text": ["item_raw_emb"],
    "llm": ["item_knowledge_emb", "user_profile_emb"],
}


@dataclass
class BuiltDataset:
    data: CtrData
    versions: dict[str, str]          # every feature-table version read (pinned in the model manifest)
    missing: dict[str, int]           # label rows with no feature row, per vector table


def _age_bucket(age: pd.Series) -> pd.Series:
    bins = [0, 18, 25, 35, 45, 50, 56, 200]
    labels = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]
    return pd.cut(age.astype("float64"), bins=bins, labels=labels, right=False).astype("str")


def _attributes(store: FeatureStore, versions: Mapping[str, str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    users = store.read_pandas("users", versions["users"])
    users = pd.DataFrame({"user_id": users["user_id"], "gender": users["gender"].fillna("unknown").astype("str"),
                          "age_bucket": _age_bucket(users["age"]),
                          "occupation": users["occupation"].fillna("unknown").astype("str")})
    items = store.read_pandas("items", versions["items"])
    genres = sorted({g for gs in items["genres"] for g in (gs if gs is not None else [])})
    multi_hot = pd.DataFrame({f"genre_{g}": [float(gs is not None and g in gs) for gs in items["genres"]]
                              for g in genres})
    year = items["year"].astype("Float64")
    out = pd.concat([items[["item_id"]], multi_hot], axis=1)
    out["year"] = year.fillna(year.median()).astype("float64")
    out["first_genre"] = [gs[0] if gs is not None and len(gs) else "none" for gs in items["genres"]]
    out["decade"] = (out["year"] // 10 * 10).astype("int64").astype("str")
    return users, out, [f"genre_{g}" for g in genres]


def attribute_frames(store: FeatureStore, versions: Mapping[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, items) model columns keyed by user_id / item_id, as training saw them: serving joins its
    candidates to these (pin the versions from the model manifest's feature_tables)."""
    users, items, _ = _attributes(store, versions)
    return users, items


def build_ctr_dataset(store: FeatureStore, vector_tables: tuple[str, ...] = VECTOR_TABLES,
                      versions: Mapping[str, str] | None = None, threads: int | None = None,
                      history_len: int = 20) -> BuiltDataset:
    """CtrData with categorical ids/attributes, genre multi-hot, one vector group per vector table, and each
    sample's last `history_len` items before its timestamp."""
    names = ("interaction_splits", "users", "items", *vector_tables)
    pinned = {n: (versions or {}).get(n) or store.resolve(n) for n in names}
    splits = store.read_pandas("interaction_splits", pinned["interaction_splits"])
    labels = splits[splits["role"] == "sample"][["user_id", "item_id", "label", "timestamp", "split"]]
    labels = labels.reset_index(drop=True)
    users, items, genre_cols = _attributes(store, pinned)
    frame = labels.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    joined = point_in_time_join(labels[["user_id", "item_id", "timestamp"]], store,
                                {t: pinned[t] for t in vector_tables}, timestamp_col="timestamp",
                                prefix_features=True, threads=threads)
    vectors = {t: vector_matrix(joined[f"{t}__emb"]) for t in vector_tables}
    missing = {t: int(np.asarray(joined[f"{t}__missing"]).sum()) for t in vector_tables}
    for t, n in missing.items():
        if n:
            log.warning("%s: %d of %d label rows have no feature row (default vector used)", t, n, len(labels))
    hist, hist_len = recent_items(splits["user_id"].to_numpy(), splits["item_id"].to_numpy(),
                                  splits["timestamp"].to_numpy(), labels["user_id"].to_numpy(),
                                  labels["timestamp"].to_numpy(), history_len)
    categorical = ["user_id", "item_id", "gender", "age_bucket", "occupation", "first_genre", "decade"]
    numeric = ["year", *genre_cols]
    parts = {}
    for name in ("train", "valid", "test"):
        mask = (frame["split"] == name).to_numpy()
        parts[name] = CtrSplit(frame[mask].reset_index(drop=True), {t: v[mask] for t, v in vectors.items()},
                               history=hist[mask], history_len=hist_len[mask])
    data = CtrData(parts["train"], parts["valid"], parts["test"], categorical=categorical, numeric=numeric)
    log.info("CTR data: train %d, valid %d, test %d rows; mean history length %.1f of %d", len(data.train),
             len(data.valid), len(data.test), float(hist_len.mean()) if len(hist_len) else 0.0, history_len)
    return BuiltDataset(data, pinned, missing)
