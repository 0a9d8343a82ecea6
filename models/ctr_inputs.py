"""The input contract of `models/`: CTR samples split into train/valid/test, plus dense vector groups.

models/dataset_builder.py builds a `CtrData` from the feature store (labels joined to features as of each label's
time, columns as the feature spec in cfg.train.features says); every trainer reads only this. `features` /
`entry_columns` / `column_groups` carry the spec (empty for synthetic data built in code). `validate_ctr_data` turns a malformed input into a one-line error that
names the split, the column or group, and the offending row.

    from models.ctr_inputs import CtrData, CtrSplit, validate_ctr_data
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass
class CtrSplit:
    frame: pd.DataFrame  # one row per CTR sample
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # group -> (len(frame), d) float32, row-aligned
    # the user's recent items before each sample (models/history.py): raw item ids, 0-padded after `history_len`
    history: np.ndarray | None = None  # (len(frame), L) int64
    history_len: np.ndarray | None = None  # (len(frame),) int64

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class CtrData:
    train: CtrSplit
    valid: CtrSplit
    test: CtrSplit
    categorical: list[str]
    numeric: list[str]
    label: str = "label"
    user_col: str = "user_id"
    item_col: str = "item_id"  # with user_col: the id columns LightGBM takes as numeric, not categorical
    features: tuple = ()  # the FeatureEntry list (configs/train_config.py) the columns were built from
    entry_columns: dict[str, list[str]] = field(default_factory=dict)  # entry name -> its model columns/vector
    column_groups: dict[str, str] = field(default_factory=dict)  # column/vector -> feature group (gated ones)
    # entity -> "int" | "string": how the source spells its ids (common/id_keys.py); serving takes those ids.
    id_types: dict[str, str] = field(default_factory=dict)
    # {"len": L, "half_life": h} when the spec has taste / match entries (models/taste.py): serving needs them too
    taste: dict | None = None

    @property
    def has_history(self) -> bool:
        return all(s.history is not None for s in (self.train, self.valid, self.test))

    def splits(self) -> dict[str, CtrSplit]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    @property
    def id_columns(self) -> list[str]:
        return [c for c in (self.user_col, self.item_col) if c in self.categorical]


def validate_ctr_data(data: CtrData, groups: Sequence[str] = ()) -> None:
    """Raise ValueError naming split/column/group/row if `data` cannot feed a model using `groups`."""
    wanted = list(dict.fromkeys([*data.categorical, *data.numeric, data.label, data.user_col]))
    dims: dict[str, int] = {}
    for split_name, split in data.splits().items():
        frame = split.frame
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"CtrData.{split_name}: missing column(s) {missing}")
        if len(frame) == 0:
            raise ValueError(f"CtrData.{split_name}: no rows")
        labels = pd.to_numeric(frame[data.label], errors="coerce")
        bad = ~labels.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"CtrData.{split_name}: row {row} column {data.label!r} = "
                             f"{frame[data.label].iloc[row]!r}, expected 0 or 1")
        for col in data.numeric:
            values = pd.to_numeric(frame[col], errors="coerce")
            bad = values.isna() & frame[col].notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(f"CtrData.{split_name}: row {row} column {col!r} = {frame[col].iloc[row]!r} "
                                 "is not numeric")
        if split.history is not None:
            hist = np.asarray(split.history)
            lens = np.asarray(split.history_len) if split.history_len is not None else None
            if hist.ndim != 2 or hist.shape[0] != len(frame) or lens is None or lens.shape != (len(frame),):
                raise ValueError(f"CtrData.{split_name}: history has shape {hist.shape} and history_len "
                                 f"{None if lens is None else lens.shape}, expected ({len(frame)}, L) and "
                                 f"({len(frame)},)")
            bad_len = (lens < 0) | (lens > hist.shape[1])
            if bad_len.any():
                row = int(np.flatnonzero(bad_len)[0])
                raise ValueError(f"CtrData.{split_name}: row {row} history_len {int(lens[row])} outside "
                                 f"0..{hist.shape[1]}")
        for group in groups:
            if group not in split.vectors:
                raise ValueError(f"CtrData.{split_name}: vector group {group!r} not provided "
                                 f"(have {sorted(split.vectors)})")
            arr = np.asarray(split.vectors[group])
            if arr.ndim != 2 or arr.shape[0] != len(frame):
                raise ValueError(f"CtrData.{split_name}: vector group {group!r} has shape {arr.shape}, "
                                 f"expected ({len(frame)}, d)")
            if dims.setdefault(group, arr.shape[1]) != arr.shape[1]:
                raise ValueError(f"CtrData.{split_name}: vector group {group!r} has dimension {arr.shape[1]}, "
                                 f"train has {dims[group]}")
            finite = np.isfinite(arr).all(axis=1)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise ValueError(f"CtrData.{split_name}: vector group {group!r} row {row} has NaN/inf")
