"""The pinned feature-table versions a model needs, read once into memory for serving.

`FeatureSnapshot.load(store, pins, feature_map)` reads exactly the tables named by the feature-spec entries in the
model's feature map (models/feature_spec.py), with the same functions the dataset builder uses, so categorical
buckets, multi-hot columns and median filling cannot drift from training:

- scalar entries of timeless tables (users, items, item_tags): `side_frame`, one row per key;
- scalar entries of timestamped tables (user_interest) and every vector entry: an `OnlineTable` (latest row per
  key, the table's default for unknown keys), scalars then through `apply_transform`;
- the sequence entry: each user's item sequence from `interaction_splits` (the last `L` items of ALL the user's
  rows, i.e. the history "as of now");
- taste / match entries (models/taste.py): the item vector table as an `OnlineTable`, and each user's latest
  liked items from `interaction_splits` (or a request's history), averaged with the model's own settings.

Nothing here runs per request: models/serving/compiled.py turns a snapshot into per-item / per-user input rows.

    snap = FeatureSnapshot.load(FeatureStore("var/ml100k/feature_store"), manifest["feature_tables"], feature_map)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from configs.train_config import FeatureEntry
from feature_store import FeatureStore, OnlineTable
from models.feature_spec import ITEM_KEY, USER_KEY, age_bucket, apply_transform, is_static, side_frame, spec_entries
from models.history import recent_items
from models.taste import MATCH, check_item_table, entry_taste, is_history_derived, liked_events

SIDES = (USER_KEY, ITEM_KEY)


@dataclass
class FeatureSnapshot:
    versions: dict[str, str]               # table -> exact version read
    entries: list[FeatureEntry]            # the model's feature-spec entries
    static: dict[str, pd.DataFrame]        # side key -> key + static scalar model columns, one row per key
    static_tables: dict[str, list[str]]    # side key -> its timeless scalar tables (the first is "users"/"items")
    static_ids: dict[str, np.ndarray]      # timeless table -> the int64 keys it holds
    online: dict[str, OnlineTable]         # timestamped scalar tables and every vector table
    online_ids: dict[str, np.ndarray]      # online table -> the int64 keys it holds
    events: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (user, item, int64 time) of interaction_splits
    liked: np.ndarray | None = None        # events mask: what a taste is made of (models/taste.py liked_events)
    taste: dict | None = None              # the model's {"len", "half_life"} for taste / match entries

    @classmethod
    def load(cls, store: FeatureStore, pins: Mapping[str, str], feature_map: dict) -> "FeatureSnapshot":
        entries = spec_entries(feature_map)
        if not entries:
            raise ValueError("the model's feature_map.json records no feature-spec entries (trained on data not "
                             "built by models.dataset_builder): it cannot be served")
        # taste / match entries average the users' liked items: the label table's events
        need = list(dict.fromkeys([*(e.source for e in entries),
                                   *(["interaction_splits"] if any(map(is_history_derived, entries)) else [])]))
        missing = [t for t in need if t not in pins]
        if missing:
            raise ValueError(f"model manifest pins no version for table(s) {missing} (pins: {sorted(pins)})")
        versions = {t: store.resolve(t, pins[t]) for t in need}
        seq = [e for e in entries if e.type == "sequence"] if feature_map.get("history") else []
        derived = [e for e in entries if is_history_derived(e)]
        scalar_or_vector = [e for e in entries if e.type != "sequence" and not is_history_derived(e)]
        static, static_tables, static_ids, online, online_ids = {}, {}, {}, {}, {}
        for key in SIDES:
            static[key] = side_frame(store, versions, scalar_or_vector, key).reset_index(drop=True)
            tables = [e.source for e in scalar_or_vector if e.key == key and e.type != "vector"
                      and is_static(store, e.source, versions[e.source])]
            primary = "users" if key == USER_KEY else "items"
            static_tables[key] = list(dict.fromkeys(sorted(tables, key=lambda t: t != primary)))
        for table in {t for ts in static_tables.values() for t in ts}:
            key = next(e.key for e in entries if e.source == table)
            static_ids[table] = store.read(table, versions[table], columns=[key]).column(key).to_numpy()
        for e in scalar_or_vector:
            if e.source in online or (e.type != "vector" and any(e.source in ts for ts in static_tables.values())):
                continue  # static scalars come from `static`; vectors of any table from an OnlineTable
            table = OnlineTable.load(store, e.source, versions[e.source])
            if list(table.spec.join_keys) != [e.key]:
                raise ValueError(f"table {e.source!r} (version {versions[e.source]}): join keys "
                                 f"{list(table.spec.join_keys)}, the feature spec says [{e.key!r}]")
            online[e.source] = table
            online_ids[e.source] = store.read(e.source, versions[e.source], columns=[e.key]).column(e.key).to_numpy()
        for e in derived:
            if e.source not in online:
                online[e.source] = OnlineTable.load(store, e.source, versions[e.source])
                check_item_table(e, online[e.source].spec.join_keys)
        events = liked = None
        if seq or derived:
            labels_table = seq[0].source if seq else "interaction_splits"
            if labels_table not in versions:
                raise ValueError(f"model manifest pins no version for {labels_table!r} (the users' histories)")
            ev = store.read(labels_table, versions[labels_table])
            if "sampled" in ev.column_names:  # negatives drawn for a positives-only log are not behaviour
                ev = ev.filter(pc.invert(ev.column("sampled")))
            events = (ev.column("user_id").to_numpy(), ev.column("item_id").to_numpy().astype(np.int64),
                      ev.column("timestamp").cast(pa.int64()).to_numpy())
            liked = liked_events(ev.select([c for c in ("label",) if c in ev.column_names]).to_pandas())
        return cls(versions, entries, static, static_tables, static_ids, online, online_ids, events, liked,
                   feature_map.get("taste"))

    @property
    def users(self) -> pd.DataFrame:
        return self.static[USER_KEY]

    @property
    def items(self) -> pd.DataFrame:
        return self.static[ITEM_KEY]

    def tables(self, key: str) -> list[str]:
        """Tables on `key`'s side, in the order `missing` reports them (the attribute table first)."""
        dynamic = [t for t in dict.fromkeys(e.source for e in self.entries if e.key == key and e.source in self.online
                                            and not is_history_derived(e))
                   if t not in self.static_tables[key]]
        return [*self.static_tables[key], *dynamic]

    def missing(self, key: str, ids: np.ndarray) -> np.ndarray:
        """(len(ids), len(tables(key))) bool: the id has no row in that table (takes its defaults)."""
        cols = []
        for t in self.tables(key):
            if t in self.online:
                cols.append(self.online[t].lookup(ids)[1])
            else:
                cols.append(~np.isin(ids, self.static_ids[t].astype(np.int64)))
        return np.stack(cols, axis=1) if cols else np.zeros((len(ids), 0), dtype=bool)

    def scalars(self, key: str, ids: np.ndarray) -> pd.DataFrame:
        """key + every scalar model column of `key`'s side for `ids` (NaN / table defaults where absent)."""
        frame = pd.DataFrame({key: ids}).merge(self.static[key], on=key, how="left")
        for e in self.entries:
            if e.key == key and e.transform == MATCH:
                frame[e.name] = 0.0  # a user x item value: the compiled model fills it per candidate
            elif is_history_derived(e):
                continue
            elif (e.key == key and e.type in ("categorical", "numeric") and e.source in self.online
                    and e.source not in self.static_tables[key]):  # timestamped: latest row per key
                values = self.online[e.source].get(ids)[e.column]
                frame = pd.concat([frame, apply_transform(e, pd.Series(list(values)))], axis=1)
        return frame

    def vector_entry(self, name: str) -> FeatureEntry:
        return next(e for e in self.entries if e.name == name and e.type == "vector")

    def vectors(self, key: str, ids: np.ndarray, groups: Sequence[str],
                liked: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Each vector group for `ids` if it is on `key`'s side (unknown ids: the table default), else zeros.
        Taste groups average each user's liked items: `liked` (hist, lengths) or their latest ones."""
        out = {}
        for g in groups:
            e = self.vector_entry(g)
            table = self.online[e.source]
            if e.key == key and is_history_derived(e):
                hist, lengths = liked if liked is not None else self.liked_history(ids)
                out[g] = entry_taste(e, table, hist, lengths, self.taste["half_life"])
            elif e.key == key:
                out[g] = table.get_vectors(e.column, ids)
            else:
                out[g] = np.zeros((len(ids), table.spec.feature(e.column).dim), dtype=np.float32)
        return out

    def latest_history(self, user_ids: np.ndarray, max_len: int,
                       liked_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Each user's last `max_len` items (oldest first, 0-padded) over all their rows (or only the liked ones),
        and the lengths."""
        n = len(user_ids)
        events = self.events if self.events is None or not liked_only else tuple(a[self.liked] for a in self.events)
        if events is None or len(events[0]) == 0:
            return np.zeros((n, max_len), dtype=np.int64), np.zeros(n, dtype=np.int64)
        users, items, times = events
        # a query time after every event: recent_items excludes events at or after it, so all are included
        q_times = np.full(n, times.max() + 1, dtype=np.int64)
        return recent_items(users, items, times, np.asarray(user_ids), q_times, max_len)

    def liked_history(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each user's last taste-length liked items, as of now (models/taste.py)."""
        return self.latest_history(user_ids, int(self.taste["len"]), liked_only=True)

    def match_entries(self) -> list[FeatureEntry]:
        return [e for e in self.entries if e.transform == MATCH]

    def key_universe(self, key: str, extra: Sequence = ()) -> np.ndarray:
        """Sorted int64 ids known to any table on this side (plus `extra`, e.g. the model's id vocabulary)."""
        parts = [self.static[key][key].to_numpy(dtype=np.int64)]
        for t in self.tables(key):
            if t in self.online:
                parts.append(self.online_ids[t].astype(np.int64))
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
            out["age_bucket"] = str(age_bucket(pd.Series([value])).iloc[0])
        elif key in allowed:
            if not isinstance(value, str):
                raise ValueError(f"context[{key!r}] = {value!r}: expected a string")
            out[key] = value
        else:
            raise ValueError(f"context key {key!r} not understood; allowed: {sorted([*allowed, 'age', 'history'])}")
    return out
