"""Sorting helpers for logs of millions of rows: a stable multi-column sort, and checks that use an existing order.

A canonical interactions table is sorted by (user, time, item) once, at ingest; later stages check that order in
one vectorised pass instead of sorting or hashing 10M rows again.

    python -c "import numpy as np; from augment.data.sorting import lexsorted; print(lexsorted([np.array([1, 1, 2])]))"
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def sort_order(columns: list[np.ndarray]) -> np.ndarray:
    """Stable lexicographic order of int64 columns (first column first): Arrow's sort, 2.5x numpy's lexsort on
    10M rows. Equal rows keep their input order."""
    table = pa.table({f"c{k}": c for k, c in enumerate(columns)})
    return pc.sort_indices(table, sort_keys=[(f"c{k}", "ascending") for k in range(len(columns))]).to_numpy()


def _steps(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row k+1 sorts strictly after row k, row k+1 equals row k) for every k."""
    n = len(columns[0]) - 1 if columns else 0
    ahead, same = np.zeros(max(n, 0), dtype=bool), np.ones(max(n, 0), dtype=bool)
    for c in columns:
        ahead |= same & (c[1:] > c[:-1])
        same &= c[1:] == c[:-1]
    return ahead, same


def lexsorted(columns: list[np.ndarray]) -> bool:
    """Are the rows already in lexicographic order (ties allowed)?"""
    ahead, same = _steps(columns)
    return bool((ahead | same).all())


def neighbour_equal(columns: list[np.ndarray]) -> np.ndarray:
    """Row k+1 equals row k in every column, for each k (n - 1 flags): in sorted rows, where the repeats are."""
    return _steps(columns)[1]


def repeats_if_sorted(columns: list[np.ndarray]) -> np.ndarray | None:
    """For rows already in lexicographic order, the positions k where row k+1 repeats row k; None when the rows
    are not in order (one pass for both questions)."""
    ahead, same = _steps(columns)
    return np.flatnonzero(same) if bool((ahead | same).all()) else None


def int_columns(frame: pd.DataFrame, keys: list[str]) -> list[np.ndarray] | None:
    """The columns as int64 arrays (timestamps as their integer ticks), or None if one is not integer/time."""
    cols = []
    for k in keys:
        s = frame[k]
        if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
            cols.append(s.array.asi8)
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.hasnans:
            cols.append(s.to_numpy(np.int64))
        else:
            return None
    return cols
