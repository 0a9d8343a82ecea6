"""The pinned feature-table versions a model needs, read once into memory for serving.

`FeatureSnapshot.load(store, pins, vector_groups)` reads the users/items attribute tables through the same
function the training dataset uses (models.ctr_dataset._attributes, so categorical buckets, genre multi-hot and
year filling cannot drift from training), each vector table into an `OnlineTable` (latest row per key, default
vector for unknown keys), and each user's item sequence from `interaction_splits` (for sequence models: the last
`L` items of ALL the user's rows, i.e. the history "as of now").

Nothing here runs per request: models/serving/compiled.py turns a snapshot into per-item / per-user input rows.

    from feature_store import FeatureStore
    snap = FeatureSnapshot.load(FeatureStore("var/ml100k/feature_store"), manifest["feature_tables"],
                                ["item_knowledge_emb", "user_profile_emb"])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from feature_store import FeatureStore, OnlineTable
from models.ctr_dataset import _age_bucket, _attributes
from models.history import recent_items

USER_KEY, ITEM_KEY = "user_id", "item_id"
VECTOR_FEATURE = "emb"  # the vector column of every embedding table (feature_store.definitions.embedding_spec)


@dataclass
class FeatureSnapshot:
    versions: dict[str, str]              # table -> exact version read
    users: pd.DataFrame                   # user_id + user-side attribute columns, one row per user
    items: pd.DataFrame                   # item_id + item-side attribute columns, one row per item
    vector_tables: dict[str, OnlineTable]  # vector group -> its pinned table
    vector_keys: dict[str, str]           # vector group -> "user_id" | "item_id"
    vector_ids: dict[str, np.ndarray]     # vector group -> the int64 keys its table holds
    events: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (user, item, int64 time) of interaction_splits

    @classmethod
    def load(cls, store: FeatureStore, pins: Mapping[str, str], vector_groups: Sequence[str],
             with_history: bool = False) -> "FeatureSnapshot":
        need = ["users", "items", *vector_groups] + (["interaction_splits"] if with_history else [])
        missing = [t for t in need if t not in pins]
        if missing:
            raise ValueError(f"model manifest pins no version for table(s) {missing} (pins: {sorted(pins)})")
        versions = {t: store.resolve(t, pins[t]) for t in need}
        users, items, _ = _attributes(store, versions)
        tables, keys, ids = {}, {}, {}
        for group in vector_groups:
            table = OnlineTable.load(store, group, versions[group])
            key = table.spec.join_keys
            if len(key) != 1 or key[0] not in (USER_KEY, ITEM_KEY):
                raise ValueError(f"vector table {group!r} (version {versions[group]}): join keys {list(key)}, "
                                 f"expected [{USER_KEY!r}] or [{ITEM_KEY!r}]")
            tables[group], keys[group] = table, key[0]
            ids[group] = store.read(group, versions[group], columns=[key[0]]).column(key[0]).to_numpy()
        events = None
        if with_history:
            ev = store.read("interaction_splits", versions["interaction_splits"], columns=["user_id", "item_id",
                                                                                          "timestamp"])
            events = (ev.column("user_id").to_numpy(), ev.column("item_id").to_numpy().astype(np.int64),
                      ev.column("timestamp").cast(pa.int64()).to_numpy())
        return cls(versions, users.reset_index(drop=True), items.reset_index(drop=True), tables, keys, ids, events)

    def latest_history(self, user_ids: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Each user's last `max_len` items (oldest first, 0-padded) over all their rows, and the lengths."""
        n = len(user_ids)
        if self.events is None or len(self.events[0]) == 0:
            return np.zeros((n, max_len), dtype=np.int64), np.zeros(n, dtype=np.int64)
        users, items, times = self.events
        # a query time after every event: recent_items excludes events at or after it, so all are included
        q_times = np.full(n, times.max() + 1, dtype=np.int64)
        return recent_items(users, items, times, np.asarray(user_ids), q_times, max_len)

    def key_universe(self, key: str, extra: Sequence = ()) -> np.ndarray:
        """Sorted int64 ids known to any table on this side (plus `extra`, e.g. the model's id vocabulary)."""
        frame = self.users if key == USER_KEY else self.items
        parts = [frame[key].to_numpy(dtype=np.int64)]
        for group, k in self.vector_keys.items():
            if k == key:
                parts.append(self.vector_ids[group].astype(np.int64))
        ints = [v for v in extra if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
        parts.append(np.asarray(ints, dtype=np.int64))
        return np.unique(np.concatenate(parts))


def user_context_frame(snapshot: FeatureSnapshot, context: Mapping) -> dict:
    """Per-request user attribute overrides -> the user-side columns they set (raw `age` -> `age_bucket`)."""
    allowed = [c for c in snapshot.users.columns if c != USER_KEY]
    out = {}
    for key, value in context.items():
        if key == "history":
            continue
        if key == "age" and "age_bucket" in allowed:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"context['age'] = {value!r}: expected a number")
            out["age_bucket"] = str(_age_bucket(pd.Series([value])).iloc[0])
        elif key in allowed:
            if not isinstance(value, str):
                raise ValueError(f"context[{key!r}] = {value!r}: expected a string")
            out[key] = value
        else:
            raise ValueError(f"context key {key!r} not understood; allowed: {sorted([*allowed, 'age', 'history'])}")
    return out
