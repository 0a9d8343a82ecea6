"""Build the CTR training data (models/ctr_inputs.py CtrData) from EXACT feature-store versions, as the feature
spec (cfg.train.features, models/feature_spec.py) says.

Labels are the `role == "sample"` rows of `interaction_splits` (everything after each user's prompt-history
cutoff). Scalar entries of timeless tables (users, items, item_tags) are static joins on their key; vector entries
and scalar entries of timestamped tables (embeddings, user_interest) go through the point-in-time join, so a user
profile written at the user's cutoff can never be joined to a label from before it. A sequence entry gives each
sample the user's recent items strictly before its timestamp (DIN; models/history.py), taken from ALL rows of
`interaction_splits` (prompt history and earlier samples of any split), never the sample itself or later ones.

Every table read needs an exact version in `versions`: this module never resolves `latest` (the CLI does, for
people; the DAG passes what its upstream tasks wrote).

    built = build_ctr_dataset(store, versions={"interaction_splits": "v..", "users": "v..", ...}, features=...)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from configs.train_config import FeatureEntry, TrainConfig
from feature_store import FeatureStore, OnlineTable, pins, point_in_time_join, vector_matrix
from feature_store.definitions import ID_MAPS
from models.ctr_inputs import CtrData, CtrSplit
from models.feature_spec import ITEM_KEY, USER_KEY, apply_transform, pit_scalar_entries, run_entries, side_frame
from models.history import recent_items
from models.taste import check_item_table, history_features, is_history_derived, liked_events

log = logging.getLogger(__name__)
LABELS = "interaction_splits"
SPLIT_RANK = {"train": 0, "valid": 1, "test": 2}


@dataclass
class BuiltDataset:
    data: CtrData
    versions: dict[str, str]          # every feature-table version read (pinned in the model manifest)
    missing: dict[str, int]           # label rows with no feature row, per point-in-time joined table


def require_versions(tables: Sequence[str], versions: Mapping[str, str] | None) -> dict[str, str]:
    """The exact version of each table; a missing or 'latest' one is an error naming the table."""
    return pins.require_versions(tables, versions, who="CTR dataset")


def dataset_versions(versions: Mapping[str, str], features: Sequence[FeatureEntry]) -> dict[str, str]:
    """Exactly the table versions a CTR dataset over `features` reads (labels, every entry's source, and the id
    maps when given: every pipeline run gives them). Known before anything is read, so a run over the same
    versions can be recognised without building the dataset."""
    tables = list(dict.fromkeys([LABELS, *(f.source for f in features)]))
    pinned = require_versions(tables, versions)
    pinned.update({t: versions[t] for t in ID_MAPS.values() if versions.get(t)})
    return pinned


def attribute_frames(store: FeatureStore, versions: Mapping[str, str],
                     features: Sequence[FeatureEntry] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(users, items): the static scalar model columns keyed by user_id / item_id, as training saw them."""
    features = run_entries(TrainConfig()) if features is None else features
    return side_frame(store, versions, features, USER_KEY), side_frame(store, versions, features, ITEM_KEY)


def _utc_times(s: pd.Series) -> np.ndarray:
    """datetime64 UTC wall times: a tz-aware column's .to_numpy() is an object array of Timestamps (1.5M rows:
    ~2 s to make, then parsed back), the same instants as datetime64 are a view."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return s.to_numpy()


def build_ctr_dataset(store: FeatureStore, versions: Mapping[str, str],
                      features: Sequence[FeatureEntry] | None = None, threads: int | None = None,
                      history_len: int = 20, taste_len: int = 50, taste_half_life: float = 10.0) -> BuiltDataset:
    """CtrData with one column (or, multi-hot, several) per scalar entry, one vector group per vector entry and,
    if the spec has a sequence entry, each sample's last `history_len` items before its timestamp.
    `features` defaults to what a default-config run reads (models.feature_spec.run_entries)."""
    features = list(run_entries(TrainConfig()) if features is None else features)
    pinned = dataset_versions(versions, features)
    splits = store.read_pandas(LABELS, pinned[LABELS])
    # A daily run's labels join the newest profile whose cutoff is strictly before them (augment/data/stream_split.py).
    strict = "stream" in store.manifest(LABELS, pinned[LABELS]).get("recipe", {})
    labels = splits[splits["role"] == "sample"][["user_id", "item_id", "label", "timestamp", "split"]]
    # Grouped by split (stable, so each split keeps its row order): every split's vectors are then a slice of
    # one matrix, not a copy (a 1M-row log's vectors are gigabytes).
    rank = labels["split"].map(SPLIT_RANK).to_numpy()
    if np.isnan(rank).any():
        bad = labels["split"][np.isnan(rank)].iloc[0]
        raise ValueError(f"{LABELS}: split {bad!r}, expected one of {list(SPLIT_RANK)}")
    labels = labels.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)

    frame = labels
    entry_columns: dict[str, list[str]] = {}
    for key in (USER_KEY, ITEM_KEY):
        side = side_frame(store, pinned, features, key)
        frame = frame.merge(side.drop(columns=[c for c in side.columns if c in frame.columns and c != key]),
                            on=key, how="left")
    pit_scalars = pit_scalar_entries(store, pinned, features)
    vector_entries = [f for f in features if f.type == "vector" and not is_history_derived(f)]
    pit_tables = list(dict.fromkeys([f.source for f in (*pit_scalars, *vector_entries)]))
    missing: dict[str, int] = {}
    vectors: dict[str, np.ndarray] = {}
    if pit_tables:
        joined = point_in_time_join(labels[["user_id", "item_id", "timestamp"]], store,
                                    {t: pinned[t] for t in pit_tables}, timestamp_col="timestamp",
                                    prefix_features=True, threads=threads, strict=strict)
        for e in pit_scalars:
            raw = pd.Series(joined[f"{e.source}__{e.column}"].to_pylist(), name=e.column)
            frame = pd.concat([frame, apply_transform(e, raw)], axis=1)
        vectors = {e.name: vector_matrix(joined[f"{e.source}__{e.column}"]) for e in vector_entries}
        missing = {t: int(np.asarray(joined[f"{t}__missing"]).sum()) for t in pit_tables}
        del joined  # the Arrow copy of the vectors
        for t, n in missing.items():
            if n:
                log.warning("%s: %d of %d label rows have no feature row (default used)", t, n, len(labels))
    derived = [f for f in features if is_history_derived(f)]
    if derived:
        # the user's taste: liked items strictly before each label (the same rule as DIN's history below)
        liked = splits[liked_events(splits)]
        t_hist, t_len = recent_items(liked["user_id"].to_numpy(), liked["item_id"].to_numpy(),
                                     _utc_times(liked["timestamp"]), labels["user_id"].to_numpy(),
                                     _utc_times(labels["timestamp"]), taste_len)
        tables = {}
        for e in derived:
            if e.source not in tables:
                tables[e.source] = OnlineTable.load(store, e.source, pinned[e.source])
                check_item_table(e, tables[e.source].spec.join_keys)
        taste, match_cols = history_features(derived, tables, t_hist, t_len, labels["item_id"].to_numpy(),
                                             taste_half_life)
        vectors.update(taste)
        frame = pd.concat([frame, pd.DataFrame(match_cols, index=frame.index)], axis=1)
        del t_hist, tables
    categorical, numeric, column_groups = [], [], {}
    names = {f.name for f in features}
    for e in features:
        if e.type in ("categorical", "numeric"):
            # multi_hot makes <name>_<value> columns; another entry's own column never counts as one of them
            cols = ([c for c in frame.columns if c.startswith(f"{e.name}_") and c not in names]
                    if e.transform == "multi_hot" else [e.name])
            (categorical if e.type == "categorical" else numeric).extend(cols)
        elif e.type == "vector":
            cols = [e.name]
        else:
            cols = []
        entry_columns[e.name] = cols
        if e.feature_group is not None:
            column_groups.update({c: e.feature_group for c in cols})
    sequence = [f for f in features if f.type == "sequence"]
    hist = hist_len = None
    if sequence:
        seq = sequence[0]
        if seq.source != LABELS or seq.column != ITEM_KEY or seq.key != USER_KEY:
            raise ValueError(f"feature {seq.name!r}: the sequence is the user's item history "
                             f"(source {LABELS}, key user_id, column item_id)")
        # Sampled negatives (positives-only logs) are not behaviour: the history is what the user did.
        events = splits[~splits["sampled"]] if "sampled" in splits else splits
        hist, hist_len = recent_items(events["user_id"].to_numpy(), events["item_id"].to_numpy(),
                                      _utc_times(events["timestamp"]), labels["user_id"].to_numpy(),
                                      _utc_times(labels["timestamp"]), history_len)
    parts = {}
    bounds = np.searchsorted(labels["split"].map(SPLIT_RANK).to_numpy(), [0, 1, 2, 3], side="left")
    for k, name in enumerate(SPLIT_RANK):
        part = slice(int(bounds[k]), int(bounds[k + 1]))  # views of the grouped rows
        parts[name] = CtrSplit(frame.iloc[part].reset_index(drop=True), {t: v[part] for t, v in vectors.items()},
                               history=None if hist is None else hist[part],
                               history_len=None if hist_len is None else hist_len[part])
    id_types = {}
    for entity, table in ID_MAPS.items():
        if table in pinned:
            kinds = store.read(table, pinned[table], columns=["id_type"]).column("id_type")
            id_types[entity] = kinds[0].as_py() if len(kinds) else "int"
    data = CtrData(parts["train"], parts["valid"], parts["test"], categorical=categorical, numeric=numeric,
                   features=tuple(features), entry_columns=entry_columns, column_groups=column_groups,
                   id_types=id_types,
                   taste={"len": int(taste_len), "half_life": float(taste_half_life)} if derived else None)
    log.info("CTR data: train %d, valid %d, test %d rows; %d categorical, %d numeric, %d vector inputs",
             len(data.train), len(data.valid), len(data.test), len(categorical), len(numeric), len(vectors))
    return BuiltDataset(data, pinned, missing)
