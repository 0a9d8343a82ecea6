"""Typed columns from raw text: a source table as read (every cell a string, each row knowing its file and line) and
the converters that type one column, failing with a DataError that names the file, the line and the column.

    from augment.data.raw_columns import RawColumns, to_int, clean_text
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from augment.data.errors import DataError

TS_DTYPE = pd.DatetimeTZDtype("us", "UTC")  # pandas 3's default resolution; Parquet timestamp[us, tz=UTC]


# Genre placeholders that mean "no genre" (ML-100K "unknown", ml-latest "(no genres listed)").
NO_GENRE = {"", "unknown", "(no genres listed)"}


_YEAR_IN_TITLE = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


class Origin(NamedTuple):
    """One file of a table read from several (a log's bootstrap file and its partitions)."""

    file: str
    unit: str
    line_of: Callable[[int], int] | None


@dataclass
class RawColumns:
    file: str  # the file, or the first of `parts`
    frame: pd.DataFrame  # canonical column names + "_pos" (the line/row number, or the record index for `line_of`)
    unit: str = "line"
    source_columns: Mapping[str, str] = field(default_factory=dict)  # canonical -> name in the file
    # CSV: record index -> 1-based line, computed only when an error needs it (a 10M-row file is scanned once).
    line_of: Callable[[int], int] | None = None
    # Several files as one table: the frame's "_file" column indexes these, so each row keeps its file and line.
    parts: tuple[Origin, ...] = ()

    @classmethod
    def concat(cls, raws: Sequence["RawColumns"]) -> "RawColumns":
        """Files with the same canonical columns as one table, in order (Arrow text columns are chained, not
        copied); the first file's column names are the table's."""
        frame = pd.concat([r.frame.assign(_file=np.int32(k)) for k, r in enumerate(raws)], ignore_index=True)
        first = raws[0]
        return cls(first.file, frame, first.unit, first.source_columns, first.line_of,
                   tuple(Origin(r.file, r.unit, r.line_of) for r in raws))

    def origin(self, i: int) -> Origin:
        if not self.parts:
            return Origin(self.file, self.unit, self.line_of)
        return self.parts[int(self.frame["_file"].iloc[i])]

    def file_of(self, i: int) -> str:
        return self.origin(i).file

    def where(self, i: int, file: str | None = None) -> str:
        """Row `i`'s line (or row) in its own file, "... of <its file>" when that is not `file` (a message naming
        two rows of a table read from several files)."""
        o = self.origin(i)
        pos = int(self.frame["_pos"].iloc[i])
        at = f"{o.unit} {o.line_of(pos) if o.line_of else pos}"
        return at if file is None or file == o.file else f"{at} of {o.file}"

    def col(self, canonical: str) -> str:
        return self.source_columns.get(canonical, canonical)

    def rows(self, selector, columns: Sequence[str] | None = None) -> "RawColumns":
        """The same file(s) restricted to some rows (a boolean mask or positions), and to `columns` if given (a
        10M-row locator needs only "_pos"); messages keep the source files and lines."""
        if columns is not None:
            columns = [*columns, *(c for c in ("_pos", "_file") if c in self.frame and c not in columns)]
        frame = self.frame if columns is None else self.frame[columns]
        frame = frame[selector] if getattr(selector, "dtype", None) == bool else frame.iloc[selector]  # noqa: E721 - a numpy dtype equals bool, it is not bool
        return RawColumns(self.file, frame.reset_index(drop=True), self.unit, self.source_columns, self.line_of, self.parts)


@dataclass
class Positions:
    """Locator for frames without source lines: 1-based row positions, canonical column names."""

    file: str

    def file_of(self, i: int) -> str:
        return self.file

    def where(self, i: int, file: str | None = None) -> str:
        return f"row {i + 1}"

    def col(self, canonical: str) -> str:
        return canonical


def clean_text(value: object, max_len: int | None = None) -> str | None:
    """NFC, control/format characters and runs of whitespace collapsed to one space; blank -> None."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", str(value))).split())
    if max_len is not None and len(text) > max_len:
        text = text[: max_len - 1].rstrip() + "…"
    return text or None


def as_strings(s: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The column as an Arrow string array when it holds text (CSV), else None (typed Parquet columns)."""
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return pa.array(s, type=pa.string(), from_pandas=True)
    return None


def arrow_cast(text: pa.Array | pa.ChunkedArray, to: pa.DataType) -> np.ndarray | None:
    """Arrow's parser over a whole text column (as is, then trimmed), or None if any value does not parse: the
    caller then finds the first bad row with the slow path and names it."""
    for candidate in (lambda: text, lambda: pc.utf8_trim_whitespace(text)):
        try:
            return pc.cast(candidate(), to).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def blank_cells(s: pd.Series) -> pd.Series:
    text = as_strings(s)
    if text is not None:  # Arrow's kernels: no Python string per row (10M-row logs)
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
        return pd.Series(np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool), index=s.index)
    return s.isna() | (s.astype("str").str.strip() == "")


def fail_first(raw: RawColumns, mask: pd.Series | np.ndarray, column: str, problem) -> None:
    """Raise DataError for the first row where ``mask`` holds; ``problem(value)`` words it."""
    values = mask.to_numpy(dtype=bool, na_value=True) if isinstance(mask, pd.Series) else np.asarray(mask, bool)
    hits = np.flatnonzero(values)
    if len(hits):
        i = int(hits[0])
        raise DataError(problem(raw.frame[column].iloc[i]), file=raw.file_of(i), row=raw.where(i),
                        column=raw.col(column))


def require_column(raw: RawColumns, column: str) -> pd.Series:
    fail_first(raw, blank_cells(raw.frame[column]), column, lambda v: "empty value in a required column")
    return raw.frame[column]


def to_int(raw: RawColumns, column: str, required: bool = True) -> pd.Series:
    s = require_column(raw, column) if required else raw.frame[column]
    blank = blank_cells(s)
    num = pd.to_numeric(s.where(~blank), errors="coerce")
    bad = (num.isna() & ~blank) | (num.notna() & (num != num.round()))
    fail_first(raw, bad, column, lambda v: f"not an integer: {str(v)[:40]!r}")
    return num.astype("int64") if required else num.astype("Int64")


def to_float(raw: RawColumns, column: str, required: bool = True) -> pd.Series:
    s = raw.frame[column]
    text = as_strings(s)
    if text is not None and required:
        num = arrow_cast(text, pa.float64())  # the fast path; on any bad value fall through to find and name it
        if num is not None and np.isfinite(num).all():
            return pd.Series(num, index=s.index, dtype="float32")
    if required:
        require_column(raw, column)
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() | ~np.isfinite(num.fillna(0))
    else:
        blank = blank_cells(s)
        num = pd.to_numeric(s.where(~blank), errors="coerce")
        bad = (num.isna() & ~blank) | ~np.isfinite(num.fillna(0))
    fail_first(raw, bad, column, lambda v: f"not a number: {str(v)[:40]!r}")
    return num.astype("float32")


def to_timestamp(raw: RawColumns, column: str, unit: str) -> pd.Series:
    s = raw.frame[column]
    text = as_strings(s)
    num = arrow_cast(text, pa.int64()) if text is not None else None  # epoch numbers, the common case
    if num is not None:
        return pd.Series(pd.to_datetime(num, unit=unit, utc=True), index=s.index).astype(TS_DTYPE)
    s = require_column(raw, column)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype(TS_DTYPE)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.dt.tz_localize("UTC").astype(TS_DTYPE)  # naive datetimes in a Parquet file: read as UTC
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().any():  # epoch numbers; a stray non-number among them is a type error
        fail_first(raw, num.isna(), column, lambda v: f"not a number ({unit} since epoch): {str(v)[:40]!r}")
        return pd.to_datetime(num, unit=unit, utc=True).astype(TS_DTYPE)
    parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    fail_first(raw, parsed.isna(), column, lambda v: f"not a timestamp: {str(v)[:40]!r}")
    return parsed.astype(TS_DTYPE)


def to_text(raw: RawColumns, column: str, required: bool = False) -> pd.Series:
    s = require_column(raw, column) if required else raw.frame[column]
    out = pd.Series([clean_text(v) for v in s], index=s.index, dtype="object")
    if required:  # a value of only control characters/whitespace is as empty as a blank one
        fail_first(raw, out.isna(), column, lambda v: "no printable text in a required column")
    return out


def split_genres(values: pd.Series, sep: str) -> pd.Series:
    """Lists of clean genre names, in source order, without duplicates or "no genre" placeholders."""

    def split(v: object) -> list[str]:
        if isinstance(v, (list, tuple, np.ndarray)):  # a Parquet list column
            parts = [str(x) for x in v]
        else:
            parts = (clean_text(v) or "").split(sep)
        out: list[str] = []
        for p in parts:
            g = clean_text(p) or ""
            if g.lower() not in NO_GENRE and g not in out:
                out.append(g)
        return out

    return pd.Series([split(v) for v in values], index=values.index, dtype="object")


def year_from_title(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(title without a trailing "(1995)", year as Int64) — ml-latest and some ML-100K rows keep it in the title."""
    match = titles.str.extract(_YEAR_IN_TITLE, expand=False)
    stripped = titles.str.replace(_YEAR_IN_TITLE, "", regex=True)
    # A title that is only "(1995)" keeps its text rather than becoming empty.
    stripped = stripped.where(stripped.str.len() > 0, titles)
    return stripped, pd.to_numeric(match, errors="coerce").astype("Int64")
