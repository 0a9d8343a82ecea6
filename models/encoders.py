"""Feature encoders fit on the TRAIN split only, serialisable to JSON for the saved feature map.

- `Vocabulary`: categorical value -> id in 1..n (sorted train values), 0 for unknown / missing. Both backbones use
  it, so an unseen user, item or genre at valid/test/serving time never crashes and never leaks.
- `NumericScaler`: train mean/std per numeric column (raw years ~2000 would swamp a DNN); NaN -> train mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def _sorted_unique(values: pd.Series, column: str) -> list[Any]:
    uniq = pd.unique(values.dropna())
    try:
        ordered = sorted(uniq.tolist())
    except TypeError as exc:  # mixed int/str in one column
        raise ValueError(f"categorical column {column!r} mixes value types ({exc}); cast it to one type") from exc
    return ordered


@dataclass
class Vocabulary:
    column: str
    values: list[Any]  # position i holds the value with id i+1

    @classmethod
    def fit(cls, series: pd.Series, column: str) -> "Vocabulary":
        return cls(column, _sorted_unique(series, column))

    @property
    def size(self) -> int:
        """Embedding rows needed: n values + id 0 for unknown/padding."""
        return len(self.values) + 1

    def encode(self, series: pd.Series) -> np.ndarray:
        """int64 ids in 0..n; 0 = not seen in train (or missing)."""
        index = pd.Index(self.values)
        codes = index.get_indexer(series)
        return (codes + 1).astype(np.int64)  # get_indexer gives -1 for unseen -> 0

    def to_json(self) -> dict:
        return {"column": self.column, "values": list(self.values)}

    @classmethod
    def from_json(cls, obj: dict) -> "Vocabulary":
        return cls(obj["column"], list(obj["values"]))


@dataclass
class NumericScaler:
    columns: list[str]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str]) -> "NumericScaler":
        block = frame[columns].apply(pd.to_numeric, errors="coerce").astype(np.float64) if columns else None
        if block is None:
            return cls([], [], [])
        mean = block.mean().fillna(0.0)
        std = block.std(ddof=0).fillna(0.0)
        std = std.where(std > 1e-12, 1.0)  # constant column: leave centred at 0
        return cls(list(columns), mean.tolist(), std.tolist())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.columns:
            return np.zeros((len(frame), 0), dtype=np.float32)
        block = frame[self.columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        out = (block - np.asarray(self.mean)) / np.asarray(self.std)
        return np.nan_to_num(out, nan=0.0).astype(np.float32)

    def to_json(self) -> dict:
        return {"columns": self.columns, "mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, obj: dict) -> "NumericScaler":
        return cls(list(obj["columns"]), list(obj["mean"]), list(obj["std"]))
