"""Canonical interactions/items/users DataFrames from MovieLens-100K or any CSV/Parquet dataset, validated.

Every loader ends in the same three typed frames plus the id maps (see ``Canonical``); bad input raises
``DataError`` with one line naming the file, the line (1-based, header = line 1) or key, and the column. Nothing is
written here: the caller (``python -m augment ingest``) stores the frames in the feature store.

Built for logs of millions of rows: CSV is parsed by Arrow, each id column is dictionary-encoded once (ids of any
type become int64 keys, common/id_keys.py), one sort does every duplicate check (data.duplicates), and a line
number is worked out only for an error message. The label comes from data.feedback (rating, a 0/1 column, an
event type, or every row for positives-only logs).

A daily log may come as one file per interval (stream.partitions): the bootstrap file (data.generic.interactions,
everything before stream.start) and the partition of every interval up to stream.end are read as one table, each
row keeping its own file and line for messages, and each file's rows must lie in its interval.

    python -m augment.data.ingest configs/ml-latest-small.yaml      # load, validate, print a summary
"""
from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from augment.data.errors import DataError, decode_utf8
from augment.data.movielens import fetch_recbole_wheel, read_ml100k
from augment.data.sorting import int_columns, neighbour_equal, repeats_if_sorted, sort_order
from common.id_keys import IdType, infer_id_type, is_canonical_int, keys_for, show_id
from configs import ColumnMap, DataConfig, GenericSource, StreamConfig

TS_DTYPE = pd.DatetimeTZDtype("us", "UTC")  # pandas 3's default resolution; Parquet timestamp[us, tz=UTC]

INTERACTION_KEYS = ("user_id", "item_id", "timestamp")
# The columns each feedback kind needs on top of the keys (data.feedback); "rating" is optional for the others.
FEEDBACK_COLUMNS = {"rating": ("rating",), "label": ("label",), "event": ("event",), "positive_only": ()}
INTERACTION_REQUIRED = (*INTERACTION_KEYS, "rating")  # MovieLens and the default rating feedback
ITEM_REQUIRED, ITEM_OPTIONAL = ("item_id", "title"), ("genres", "year")
USER_REQUIRED, USER_OPTIONAL = ("user_id",), ("gender", "age", "occupation", "zip_code")

INTERACTION_DTYPES = {"user_id": "int64", "item_id": "int64", "rating": "float32", "label": "int8",
                      "timestamp": TS_DTYPE}
ITEM_DTYPES = {"item_id": "int64", "title": "str", "year": "Int64", "genres": "object"}
USER_DTYPES = {"user_id": "int64", "gender": "object", "age": "Int64", "occupation": "object", "zip_code": "object"}

# Genre placeholders that mean "no genre" (ML-100K "unknown", ml-latest "(no genres listed)").
NO_GENRE = {"", "unknown", "(no genres listed)"}
_YEAR_IN_TITLE = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


@dataclass
class Canonical:
    """The three canonical tables (RangeIndex, sorted by key; interactions by user, time, item) and the id maps.

    interactions: user_id int64, item_id int64, rating float32 (NaN when the log has none), label int8,
                  timestamp datetime64[us, UTC]
    items:        item_id int64, title str, year Int64 (nullable), genres list[str] (object column of lists),
                  then one nullable str (object) column per data.item_text_columns entry, cleaned like titles
    users:        user_id int64, gender/occupation/zip_code str or None, age Int64 (nullable); may have 0 rows
    id_maps:      {"user"|"item": frame of <entity>_id (the int64 key), source_id (the original id as text),
                  id_type ("int"|"string")} for every key above (common/id_keys.py)
    stats:        what ingest did to the data (duplicate rows dropped, ...), for the stage stats and the report
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    id_maps: dict[str, pd.DataFrame] = field(default_factory=dict)
    stats: dict[str, int | str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Raw tables: strings (CSV) or typed values (Parquet) under canonical names, plus where each row came from.


class _Origin(NamedTuple):
    """One file of a table read from several (a log's bootstrap file and its partitions)."""

    file: str
    unit: str
    line_of: Callable[[int], int] | None


@dataclass
class _Raw:
    file: str  # the file, or the first of `parts`
    frame: pd.DataFrame  # canonical column names + "_pos" (the line/row number, or the record index for `line_of`)
    unit: str = "line"
    source_columns: Mapping[str, str] = field(default_factory=dict)  # canonical -> name in the file
    # CSV: record index -> 1-based line, computed only when an error needs it (a 10M-row file is scanned once).
    line_of: Callable[[int], int] | None = None
    # Several files as one table: the frame's "_file" column indexes these, so each row keeps its file and line.
    parts: tuple[_Origin, ...] = ()

    @classmethod
    def concat(cls, raws: Sequence["_Raw"]) -> "_Raw":
        """Files with the same canonical columns as one table, in order (Arrow text columns are chained, not
        copied); the first file's column names are the table's."""
        frame = pd.concat([r.frame.assign(_file=np.int32(k)) for k, r in enumerate(raws)], ignore_index=True)
        first = raws[0]
        return cls(first.file, frame, first.unit, first.source_columns, first.line_of,
                   tuple(_Origin(r.file, r.unit, r.line_of) for r in raws))

    def origin(self, i: int) -> _Origin:
        if not self.parts:
            return _Origin(self.file, self.unit, self.line_of)
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

    def rows(self, selector, columns: Sequence[str] | None = None) -> "_Raw":
        """The same file(s) restricted to some rows (a boolean mask or positions), and to `columns` if given (a
        10M-row locator needs only "_pos"); messages keep the source files and lines."""
        if columns is not None:
            columns = [*columns, *(c for c in ("_pos", "_file") if c in self.frame and c not in columns)]
        frame = self.frame if columns is None else self.frame[columns]
        frame = frame[selector] if getattr(selector, "dtype", None) == bool else frame.iloc[selector]  # noqa: E721 - a numpy dtype equals bool, it is not bool
        return _Raw(self.file, frame.reset_index(drop=True), self.unit, self.source_columns, self.line_of, self.parts)


@dataclass
class _Positions:
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


def _as_strings(s: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The column as an Arrow string array when it holds text (CSV), else None (typed Parquet columns)."""
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return pa.array(s, type=pa.string(), from_pandas=True)
    return None


def _arrow_cast(text: pa.Array | pa.ChunkedArray, to: pa.DataType) -> np.ndarray | None:
    """Arrow's parser over a whole text column (as is, then trimmed), or None if any value does not parse: the
    caller then finds the first bad row with the slow path and names it."""
    for candidate in (lambda: text, lambda: pc.utf8_trim_whitespace(text)):
        try:
            return pc.cast(candidate(), to).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def _blank(s: pd.Series) -> pd.Series:
    text = _as_strings(s)
    if text is not None:  # Arrow's kernels: no Python string per row (10M-row logs)
        blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
        return pd.Series(np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool), index=s.index)
    return s.isna() | (s.astype("str").str.strip() == "")


def _fail_first(raw: _Raw, mask: pd.Series | np.ndarray, column: str, problem) -> None:
    """Raise DataError for the first row where ``mask`` holds; ``problem(value)`` words it."""
    values = mask.to_numpy(dtype=bool, na_value=True) if isinstance(mask, pd.Series) else np.asarray(mask, bool)
    hits = np.flatnonzero(values)
    if len(hits):
        i = int(hits[0])
        raise DataError(problem(raw.frame[column].iloc[i]), file=raw.file_of(i), row=raw.where(i),
                        column=raw.col(column))


def _require(raw: _Raw, column: str) -> pd.Series:
    _fail_first(raw, _blank(raw.frame[column]), column, lambda v: "empty value in a required column")
    return raw.frame[column]


def _to_int(raw: _Raw, column: str, required: bool = True) -> pd.Series:
    s = _require(raw, column) if required else raw.frame[column]
    blank = _blank(s)
    num = pd.to_numeric(s.where(~blank), errors="coerce")
    bad = (num.isna() & ~blank) | (num.notna() & (num != num.round()))
    _fail_first(raw, bad, column, lambda v: f"not an integer: {str(v)[:40]!r}")
    return num.astype("int64") if required else num.astype("Int64")


def _to_float(raw: _Raw, column: str, required: bool = True) -> pd.Series:
    s = raw.frame[column]
    text = _as_strings(s)
    if text is not None and required:
        num = _arrow_cast(text, pa.float64())  # the fast path; on any bad value fall through to find and name it
        if num is not None and np.isfinite(num).all():
            return pd.Series(num, index=s.index, dtype="float32")
    if required:
        _require(raw, column)
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() | ~np.isfinite(num.fillna(0))
    else:
        blank = _blank(s)
        num = pd.to_numeric(s.where(~blank), errors="coerce")
        bad = (num.isna() & ~blank) | ~np.isfinite(num.fillna(0))
    _fail_first(raw, bad, column, lambda v: f"not a number: {str(v)[:40]!r}")
    return num.astype("float32")


def _to_timestamp(raw: _Raw, column: str, unit: str) -> pd.Series:
    s = raw.frame[column]
    text = _as_strings(s)
    num = _arrow_cast(text, pa.int64()) if text is not None else None  # epoch numbers, the common case
    if num is not None:
        return pd.Series(pd.to_datetime(num, unit=unit, utc=True), index=s.index).astype(TS_DTYPE)
    s = _require(raw, column)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype(TS_DTYPE)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.dt.tz_localize("UTC").astype(TS_DTYPE)  # naive datetimes in a Parquet file: read as UTC
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().any():  # epoch numbers; a stray non-number among them is a type error
        _fail_first(raw, num.isna(), column, lambda v: f"not a number ({unit} since epoch): {str(v)[:40]!r}")
        return pd.to_datetime(num, unit=unit, utc=True).astype(TS_DTYPE)
    parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    _fail_first(raw, parsed.isna(), column, lambda v: f"not a timestamp: {str(v)[:40]!r}")
    return parsed.astype(TS_DTYPE)


def _to_text(raw: _Raw, column: str, required: bool = False) -> pd.Series:
    s = _require(raw, column) if required else raw.frame[column]
    out = pd.Series([clean_text(v) for v in s], index=s.index, dtype="object")
    if required:  # a value of only control characters/whitespace is as empty as a blank one
        _fail_first(raw, out.isna(), column, lambda v: "no printable text in a required column")
    return out


def _id_codes(raw: _Raw, column: str) -> pa.DictionaryArray:
    """An id column dictionary-encoded, its dictionary trimmed (a Parquet int column becomes its decimal text).
    Per-row work is one hash pass; trimming, type checks and hashing then touch each distinct id once."""
    s = raw.frame[column]
    text = _as_strings(s)
    if text is None:
        if pd.api.types.is_float_dtype(s.dtype):  # 7.0 from a float column is id 7, 7.5 is not an id
            _fail_first(raw, s.notna() & (s != s.round()), column, lambda v: f"not an integer id: {v!r}")
            s = s.astype("Int64")
        text = pa.array(s.astype("str").where(s.notna(), ""), type=pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks else pa.array([], pa.string())
    codes = pc.dictionary_encode(text)
    codes = pa.DictionaryArray.from_arrays(codes.indices, pc.utf8_trim_whitespace(codes.dictionary))
    blank = np.asarray(pc.equal(codes.dictionary, "").to_numpy(zero_copy_only=False), dtype=bool)
    if blank.any():
        _fail_first(raw, blank[codes.indices.to_numpy(zero_copy_only=False)], column,
                    lambda v: "empty value in a required column")
    return codes


def _label(raw: _Raw, cfg: DataConfig, rating: pd.Series) -> pd.Series:
    if cfg.feedback == "rating":
        return (rating >= cfg.label_threshold).astype("int8")
    if cfg.feedback == "positive_only":
        return pd.Series(1, index=raw.frame.index, dtype="int8")
    if cfg.feedback == "event":
        event = _require(raw, "event").astype("str").str.strip()
        return event.isin(cfg.positive_events).astype("int8")
    s = _require(raw, "label").astype("str").str.strip().str.lower()
    value = s.map({"1": 1, "0": 0, "true": 1, "false": 0, "1.0": 1, "0.0": 0})
    _fail_first(raw, value.isna(), "label", lambda v: f"not a 0/1 label: {str(v)[:40]!r}")
    return value.astype("int8")


def _split_genres(values: pd.Series, sep: str) -> pd.Series:
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


def _year_from_title(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(title without a trailing "(1995)", year as Int64) — ml-latest and some ML-100K rows keep it in the title."""
    match = titles.str.extract(_YEAR_IN_TITLE, expand=False)
    stripped = titles.str.replace(_YEAR_IN_TITLE, "", regex=True)
    # A title that is only "(1995)" keeps its text rather than becoming empty.
    stripped = stripped.where(stripped.str.len() > 0, titles)
    return stripped, pd.to_numeric(match, errors="coerce").astype("Int64")


# --------------------------------------------------------------------------------------------------------------
# Ids: one type per entity across every file, then int64 keys (common/id_keys.py).


@dataclass
class _Ids:
    """The id columns of one entity in every file that has them (dictionary-encoded, trimmed) and their type."""

    entity: str
    columns: list[tuple[_Raw, str, pa.DictionaryArray]]  # (file, canonical column, codes)
    id_type: IdType = "int"
    _keys: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def collect(cls, entity: str, declared: str, sources: list[tuple[_Raw, str]]) -> "_Ids":
        cols = [(raw, col, _id_codes(raw, col)) for raw, col in sources]
        if declared == "auto":
            id_type: IdType = infer_id_type(*(codes.dictionary for _, _, codes in cols))
        else:
            id_type = declared  # type: ignore[assignment]
        if id_type == "int":
            for raw, col, codes in cols:
                bad = ~np.asarray(is_canonical_int(codes.dictionary).to_numpy(zero_copy_only=False), dtype=bool)
                if bad.any():
                    _fail_first(raw, bad[codes.indices.to_numpy(zero_copy_only=False)], col,
                                lambda v: f"not a canonical integer id: {str(v).strip()[:40]!r} (data.id_types."
                                          f"{entity} is int; set it to string for ids such as '007' or 'B00004TKSE')")
        return cls(entity, cols, id_type)

    def original(self, raw: _Raw, i: int) -> str:
        """Row `i`'s id as the file spells it (trimmed), quoted as messages quote it."""
        codes = next(c for r, _, c in self.columns if r is raw)
        return show_id(codes.dictionary[codes.indices[i].as_py()].as_py(), self.id_type)

    @functools.cached_property
    def distinct(self) -> tuple[pa.Array, np.ndarray]:
        """(every distinct id over the files, its key): each string id is hashed once, however often it occurs."""
        ids = pc.unique(pa.chunked_array([c.dictionary for _, _, c in self.columns], type=pa.string()))
        return ids, keys_for(ids, self.id_type)

    def keys(self, raw: _Raw) -> np.ndarray:
        """The int64 key of every row of `raw` (computed once per file)."""
        if id(raw) not in self._keys:
            codes = next(c for r, _, c in self.columns if r is raw)
            ids, keys = self.distinct
            where = pc.index_in(codes.dictionary, value_set=ids).to_numpy(zero_copy_only=False).astype(np.int64)
            self._keys[id(raw)] = keys[where][codes.indices.to_numpy(zero_copy_only=False)]
        return self._keys[id(raw)]

    def id_map(self) -> pd.DataFrame:
        """key -> original id over every file's distinct ids; two ids with one key is an error naming both."""
        key_col = f"{self.entity}_id"
        distinct, keys = self.distinct
        order = np.argsort(keys, kind="stable")
        keys, ids = keys[order], distinct.take(pa.array(order))
        collisions = np.flatnonzero(neighbour_equal([keys]))
        if len(collisions):
            a, b = ids[int(collisions[0])].as_py(), ids[int(collisions[0]) + 1].as_py()
            raise DataError(f"{self.entity} ids {a!r} and {b!r} hash to the same key; rename one of them",
                            file=self.columns[0][0].file, column=self.columns[0][0].col(self.columns[0][1]))
        return pd.DataFrame({key_col: keys, "source_id": pd.Series(ids.to_pandas(), dtype="str").to_numpy(),
                             "id_type": self.id_type})


# --------------------------------------------------------------------------------------------------------------
# Typed tables from raw ones.


def _interactions(raw: _Raw, cfg: DataConfig, unit: str, users: _Ids, items: _Ids) -> pd.DataFrame:
    has_rating = "rating" in raw.frame
    rating = (_to_float(raw, "rating", required=cfg.feedback == "rating") if has_rating
              else pd.Series(np.nan, index=raw.frame.index, dtype="float32"))
    if cfg.rating_range is not None and has_rating:
        lo, hi = cfg.rating_range
        _fail_first(raw, (rating < lo) | (rating > hi), "rating",
                    lambda v: f"rating {str(v).strip()} outside data.rating_range [{lo:g}, {hi:g}]")
    return pd.DataFrame({
        "user_id": users.keys(raw),
        "item_id": items.keys(raw),
        "rating": rating,
        "label": _label(raw, cfg, rating),
        "timestamp": _to_timestamp(raw, "timestamp", unit),
    }, index=raw.frame.index)


def _items(raw: _Raw, genres_sep: str, ids: _Ids, lenient_year: bool = False,
           text_columns: Sequence[str] = ()) -> pd.DataFrame:
    title = _to_text(raw, "title", required=True).astype("str")
    if "year" in raw.frame and not lenient_year:
        year = _to_int(raw, "year", required=False)
    else:
        stripped, title_year = _year_from_title(title)
        if "year" in raw.frame:  # ML-100K: the year column has junk ("V", "unkonwn"); fall back to the title
            col_year = pd.to_numeric(raw.frame["year"], errors="coerce").astype("Int64")
            year = col_year.fillna(title_year)
            title = title.where(col_year.notna(), stripped)
        else:
            year, title = title_year, stripped
    genres = (_split_genres(raw.frame["genres"], genres_sep) if "genres" in raw.frame
              else pd.Series([[] for _ in range(len(raw.frame))], index=raw.frame.index, dtype="object"))
    # Item text (descriptions etc.): nullable, cleaned like a title but not capped (prompts cap what they show).
    text = {col: _to_text(raw, col) for col in text_columns}
    return pd.DataFrame({"item_id": ids.keys(raw), "title": title.astype("str"),
                         "year": year.astype("Int64"), "genres": genres, **text})


def _users(raw: _Raw | None, ids: _Ids) -> pd.DataFrame:
    if raw is None:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in USER_DTYPES.items()})
    n = len(raw.frame)
    out = {"user_id": pd.Series(ids.keys(raw), index=raw.frame.index)}
    for col in ("gender", "occupation", "zip_code"):
        out[col] = _to_text(raw, col) if col in raw.frame else pd.Series([None] * n, index=raw.frame.index,
                                                                           dtype="object")
    out["age"] = _to_int(raw, "age", required=False) if "age" in raw.frame else pd.Series(
        pd.NA, index=raw.frame.index, dtype="Int64")
    return pd.DataFrame(out)[list(USER_DTYPES)]


def _finish(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
            interactions_sorted: bool = False) -> Canonical:
    if not interactions_sorted:
        inter = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    return Canonical(inter.astype(INTERACTION_DTYPES), items.astype(ITEM_DTYPES), users.astype(USER_DTYPES))


# --------------------------------------------------------------------------------------------------------------
# Checks shared by the loaders (with source line numbers) and by validate() (with row positions).


def _first_duplicate(frame: pd.DataFrame, keys: list[str], sorted_by: list[str] | None = None
                     ) -> tuple[int, int] | None:
    """Positions of the first repeated key and of its first occurrence, or None. When the frame is sorted by
    `sorted_by` (the same columns in the table's sort order; canonical interactions are), repeats are neighbours
    and one vectorised pass finds them instead of a hash of every row."""
    cols = int_columns(frame, sorted_by) if sorted_by and len(frame) > 1 else None
    repeats = repeats_if_sorted(cols) if cols is not None else None
    if repeats is not None:
        return (int(repeats[0]), int(repeats[0]) + 1) if len(repeats) else None
    repeated = np.flatnonzero(frame.duplicated(keys, keep="first").to_numpy())
    if not len(repeated):
        return None
    group = frame.groupby(keys, sort=False).ngroup().to_numpy()
    second = int(repeated[0])
    return int(np.flatnonzero(group == group[second])[0]), second


def _sort_and_drop_duplicates(inter: pd.DataFrame, raw: _Raw, policy: str,
                              show: Callable[[int], str]) -> tuple[pd.DataFrame, np.ndarray]:
    """(interactions sorted by user, time, item with exact repeats removed, the source row of each kept row).

    One sort does every duplicate check (a 10M-row log is sorted once, never grouped): exact repeats of a row
    (same user, item, time, rating and label) are dropped and counted, or are an error by `data.duplicates`; the
    same (user, item, time) with a different rating or label is always an error naming both lines.
    ``show(source_row)`` words an interaction's key for messages."""
    user, item = inter["user_id"].to_numpy(), inter["item_id"].to_numpy()
    time = inter["timestamp"].array.asi8
    order = sort_order([user, time, item])
    rating, label = inter["rating"].to_numpy()[order], inter["label"].to_numpy()[order]
    same_key = np.zeros(len(order), dtype=bool)
    same_key[1:] = neighbour_equal([user[order], time[order], item[order]])
    same_value = np.zeros(len(order), dtype=bool)
    same_value[1:] = ((rating[1:] == rating[:-1]) | (np.isnan(rating[1:]) & np.isnan(rating[:-1]))) & \
        (label[1:] == label[:-1])
    keys = ",".join(raw.col(k) for k in ("user_id", "item_id", "timestamp"))
    exact = np.flatnonzero(same_key & same_value)
    if len(exact) and policy == "error":
        a, b = sorted((int(order[exact[0] - 1]), int(order[exact[0]])))
        f = raw.file_of(b)
        raise DataError(f"duplicate interaction {show(b)} at {raw.where(a, f)} and {raw.where(b, f)} (data.duplicates "
                        f"is error; set it to drop to drop and count exact repeats)", file=f, column=keys)
    conflict = np.flatnonzero(same_key & ~same_value)
    if len(conflict):
        a, b = sorted((int(order[conflict[0] - 1]), int(order[conflict[0]])))
        what = "rating" if "rating" in raw.frame else "label"
        f = raw.file_of(b)
        raise DataError(f"conflicting duplicate interaction {show(b)} at {raw.where(a, f)} and {raw.where(b, f)}: "
                        f"same user, item and time, different {what}", file=f, column=raw.col(what))
    order = order[~same_key]
    return inter.take(order).reset_index(drop=True), order


def _check_tables(c: Canonical, sources: Mapping[str, str], loc: Mapping[str, _Raw | _Positions],
                  show: Callable[[str, int], str] | None = None, unique_already: tuple[str, ...] = ()) -> None:
    """Non-empty tables, unique keys, and every interaction's item (and user, given a users table) known.
    ``show("<table>.<column>", row_position)`` words an id for messages (the original id, not its key); without
    it the key is shown."""
    names = {t: sources.get(t, t) for t in ("interactions", "items", "users")}
    frames = {"interactions": c.interactions, "items": c.items, "users": c.users}
    if show is None:
        def show(column: str, i: int) -> str:
            table, col = column.split(".")
            return str(frames[table][col].iloc[i])
    if len(c.interactions) == 0:
        raise DataError("no interactions", file=names["interactions"])
    if len(c.items) == 0:
        raise DataError("no items", file=names["items"])
    for table, frame, keys, label in (("items", c.items, ["item_id"], "item_id"),
                                      ("users", c.users, ["user_id"], "user_id"),
                                      ("interactions", c.interactions, ["user_id", "item_id", "timestamp"],
                                       "interaction (user_id, item_id, timestamp)")):
        if table in unique_already:
            continue
        found = _first_duplicate(frame, keys, ["user_id", "timestamp", "item_id"] if table == "interactions"
                                 else keys)
        if found:
            a, b = found
            key = ", ".join(show(f"{table}.{k}", b) if k != "timestamp" else str(frame[k].iloc[b]) for k in keys)
            key = key if len(keys) == 1 else f"({key})"
            f = loc[table].file_of(b)
            raise DataError(f"duplicate {label} {key} at {loc[table].where(a, f)} and {loc[table].where(b, f)}",
                            file=f, column=",".join(loc[table].col(k) for k in keys))
    refs = [("item_id", c.items, "items")] + ([("user_id", c.users, "users")] if len(c.users) else [])
    for col, table, tname in refs:
        unknown = np.flatnonzero(~c.interactions[col].isin(table[col]).to_numpy())
        if len(unknown):
            i = int(unknown[0])
            raise DataError(f"{col} {show(f'interactions.{col}', i)} not found in {names[tname]} "
                            f"({len(unknown)} interaction(s) affected)", file=loc["interactions"].file_of(i),
                            row=loc["interactions"].where(i), column=loc["interactions"].col(col))


def validate(c: Canonical, sources: Mapping[str, str], item_text_columns: Sequence[str] = ()) -> None:
    """Check the canonical contract: columns and dtypes, required non-nulls, unique keys, known ids, clean titles.

    ``sources`` names each table's origin for messages, e.g. ``{"items": "movies.csv"}``; rows are reported by
    1-based position in the frame. ``item_text_columns`` are the items table's extra text columns, in order.
    """
    names = {t: sources.get(t, t) for t in ("interactions", "items", "users")}
    for table, frame, dtypes in (("interactions", c.interactions, INTERACTION_DTYPES),
                                 ("items", c.items, ITEM_DTYPES), ("users", c.users, USER_DTYPES)):
        for col, dtype in dtypes.items():
            if col not in frame:
                raise DataError("missing column", file=names[table], column=col)
            if str(frame[col].dtype) != str(pd.api.types.pandas_dtype(dtype)):
                raise DataError(f"dtype {frame[col].dtype}, expected {dtype}", file=names[table], column=col)
        # rating may be NaN: implicit logs have none (data.feedback).
        required = {"interactions": [c for c in INTERACTION_DTYPES if c != "rating"],
                    "items": ["item_id", "title", "genres"], "users": ["user_id"]}[table]
        for col in required:
            nulls = np.flatnonzero(frame[col].isna().to_numpy())
            if len(nulls):
                raise DataError("null in a required column", file=names[table], row=f"row {nulls[0] + 1}",
                                column=col)
    bad_title = np.flatnonzero([clean_text(t) != t for t in c.items["title"]])
    if len(bad_title):
        raise DataError("title is blank or has control characters/unnormalised whitespace", file=names["items"],
                        row=f"row {bad_title[0] + 1}", column="title")
    extra = [col for col in c.items.columns if col not in ITEM_DTYPES]
    if extra != list(item_text_columns):
        raise DataError(f"item text columns {extra}, expected {list(item_text_columns)}", file=names["items"],
                        column=",".join(extra) or None)
    for col in item_text_columns:
        bad = np.flatnonzero([not (v is None or (isinstance(v, str) and clean_text(v) == v)) for v in c.items[col]])
        if len(bad):
            raise DataError("item text must be None or clean text", file=names["items"], row=f"row {bad[0] + 1}",
                            column=col)
    bad_genres = np.flatnonzero([not (isinstance(g, list) and all(isinstance(x, str) for x in g))
                                 for g in c.items["genres"]])
    if len(bad_genres):
        raise DataError("genres must be a list of str", file=names["items"], row=f"row {bad_genres[0] + 1}",
                        column="genres")
    _check_tables(c, names, {t: _Positions(f) for t, f in names.items()})


# --------------------------------------------------------------------------------------------------------------
# Loaders.


def load_movielens100k(cfg: DataConfig, cache_dir: Path) -> Canonical:
    """MovieLens-100K from the recbole wheel (fetched into ``cache_dir`` once, sha256-checked)."""
    wheel = fetch_recbole_wheel(Path(cache_dir), cfg.recbole_version, cfg.recbole_sha256)
    raw = read_ml100k(wheel)
    for table, cols in (("inter", INTERACTION_REQUIRED), ("item", ("item_id", "movie_title", "release_year",
                                                                    "class")),
                        ("user", ("user_id", "age", "gender", "occupation", "zip_code"))):
        missing = [c for c in cols if c not in raw[table]]
        if missing:
            raise DataError("missing column", file=f"ml-100k.{table}", column=missing[0])
    r_inter = _Raw("ml-100k.inter", raw["inter"].rename(columns={"_line": "_pos"}))
    r_items = _Raw("ml-100k.item", raw["item"].rename(
        columns={"movie_title": "title", "release_year": "year", "class": "genres", "_line": "_pos"}))
    r_users = _Raw("ml-100k.user", raw["user"].rename(columns={"_line": "_pos"}))
    return _assemble(r_inter, r_items, r_users, cfg, genres_sep=" ", unit="s", lenient_year=True)


def _assemble(r_inter: _Raw, r_items: _Raw, r_users: _Raw | None, cfg: DataConfig, genres_sep: str, unit: str,
              lenient_year: bool = False, log_files: Sequence[LogFile] = ()) -> Canonical:
    """The canonical tables from raw ones; `log_files` (stream.partitions) are the files of `r_inter`, in order,
    whose time windows its rows must lie in."""
    raws = {"interactions": r_inter, "items": r_items, "users": r_users}
    sources = {t: r.file for t, r in raws.items() if r is not None}
    item_ids = _Ids.collect("item", cfg.id_types.item, [(r_items, "item_id"), (r_inter, "item_id")])
    user_ids = _Ids.collect("user", cfg.id_types.user, [(r_inter, "user_id")] + (
        [(r_users, "user_id")] if r_users is not None else []))
    # First: a key collision must be reported as one, not later as a "duplicate id" of two different ids.
    id_maps = {"item": item_ids.id_map(), "user": user_ids.id_map()}
    files = {f"{t}.{e}_id": (ids, r) for e, ids in (("item", item_ids), ("user", user_ids))
             for r, _, _ in ids.columns for t, rr in raws.items() if rr is r}
    source_row: np.ndarray | None = None  # canonical interaction row -> row of the source file, once sorted

    def show(column: str, i: int) -> str:
        """An id as the source spells it; `i` is a row of the canonical table (the source row before sorting)."""
        if column.startswith("interactions.") and source_row is not None:
            i = int(source_row[i])
        ids, raw = files[column]
        return ids.original(raw, i)

    inter = _interactions(r_inter, cfg, unit, user_ids, item_ids)
    if log_files:
        _check_windows(r_inter, inter["timestamp"], log_files)
    n_rows = len(inter)
    inter, source_row = _sort_and_drop_duplicates(
        inter, r_inter, cfg.duplicates,
        lambda i: f"({show('interactions.user_id', i)}, {show('interactions.item_id', i)}, "
                  f"{inter['timestamp'].iloc[i]})")
    c = Canonical(inter, _items(r_items, genres_sep, item_ids, lenient_year, cfg.item_text_columns),
                  _users(r_users, user_ids))
    r_kept = r_inter.rows(source_row, columns=("_pos",))  # locates the canonical rows in the source file
    _check_tables(c, sources, {"interactions": r_kept, "items": r_items, "users": r_users}, show,
                  unique_already=("interactions",))
    out = _finish(c.interactions, c.items, c.users, interactions_sorted=True)
    out.id_maps = id_maps
    out.stats = {"rows_read": n_rows, "duplicates_dropped": n_rows - len(inter),
                 "user_id_type": user_ids.id_type, "item_id_type": item_ids.id_type}
    return out


def _line_finder(path: Path, label: str, sep: str) -> Callable[[int], int]:
    """record index -> 1-based start line, exact with quoted multi-line fields and blank lines (skipped like Arrow's
    reader skips them). Built on first use: only an error message needs it."""

    @functools.cache
    def starts() -> np.ndarray:
        text = decode_utf8(path.read_bytes(), label, sep=sep)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        out, previous = [], 0
        for record in reader:
            if record:
                out.append(previous + 1)
            previous = reader.line_num
        return np.asarray(out[1:])

    return lambda pos: int(starts()[pos])


def _read_csv(path: Path, label: str, sep: str) -> pd.DataFrame:
    """Every column as text, by Arrow's multi-threaded reader (BOM, CRLF and quoted newlines handled); bad UTF-8
    is reported at its line and column."""
    import pyarrow.csv as pacsv

    with path.open("rb") as fh:
        head = fh.readline()
    try:
        header = head.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        decode_utf8(path.read_bytes(), label, sep=sep)
        raise
    names = next(csv.reader([header], delimiter=sep), []) if header.strip() else []
    if not names:
        raise DataError("unparseable CSV: no header line", file=label)
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as err:
        if "utf8" in str(err).lower():
            decode_utf8(path.read_bytes(), label, sep=sep)  # names the line and column of the bad byte
        raise DataError(f"unparseable CSV: {err}", file=label) from None
    return table.to_pandas()


def _resolve(path: str, base_dir: Path | None) -> Path:
    """A configured path: relative ones resolve against `base_dir` (stages pass the repository root)."""
    out = Path(path)
    return Path(base_dir) / out if base_dir is not None and not out.is_absolute() else out


def _read_source(cmap: ColumnMap, base_dir: Path | None, required: Sequence[str],
                 optional: Sequence[str]) -> _Raw:
    path = _resolve(cmap.path, base_dir)
    label = cmap.path
    unknown = set(cmap.columns) - set(required) - set(optional)
    if unknown:
        raise DataError(f"unknown canonical name(s) {sorted(unknown)} in the column map; "
                        f"expected some of {list(required) + list(optional)}", file=label)
    if not path.is_file():
        raise DataError(f"file not found ({path})", file=label)
    fmt = cmap.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    line_of = None
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise DataError(f"unreadable Parquet: {err}", file=label) from None
        frame["_pos"] = np.arange(1, len(frame) + 1)
        unit = "row"
    else:
        frame = _read_csv(path, label, cmap.sep)
        frame["_pos"] = np.arange(len(frame))
        line_of = _line_finder(path, label, cmap.sep)
        # Rows of only separators and spaces count as blank lines: candidates by the first column, then the rest.
        first = pa.array(frame[frame.columns[0]], type=pa.string())
        blank = np.asarray(pc.match_substring_regex(first, r"^\s*$").to_numpy(zero_copy_only=False), dtype=bool)
        if blank.any():
            for col in frame.columns[1:-1]:
                blank[blank] = (frame.loc[blank, col].str.strip() == "").to_numpy()
            frame = frame[~blank]
        unit = "line"
    renamed = {}
    for canon in (*required, *optional):
        src = cmap.columns.get(canon, canon)
        if src in frame.columns:
            renamed[src] = canon
        elif canon in required or canon in cmap.columns:
            raise DataError("missing column" + (f" (mapped from {canon!r})" if src != canon else ""),
                            file=label, column=src)
    frame = frame[[*renamed, "_pos"]].rename(columns=renamed).reset_index(drop=True)
    return _Raw(label, frame, unit, {canon: src for src, canon in renamed.items()}, line_of)


# --------------------------------------------------------------------------------------------------------------
# Daily partitions (stream.partitions): the log as a bootstrap file plus one file per interval.


class LogFile(NamedTuple):
    """A file of a partitioned log and the time window [lo, hi) its rows must lie in (lo None: the bootstrap file,
    everything before stream.start)."""

    cmap: ColumnMap
    lo: datetime | None
    hi: datetime


def log_files(cfg: DataConfig, stream: StreamConfig | None, base_dir: Path | None = None) -> list[LogFile]:
    """The files of a partitioned log as of stream.end, oldest first: the bootstrap file (data.generic.interactions),
    then the partition of every interval up to stream.end, each with data.generic.interactions' column map. Empty
    when the log is one table (no stream.partitions). A partition that is not there yet is an error naming it and
    its interval: a run must not silently see a day less."""
    if stream is None or stream.partitions is None:
        return []
    if cfg.source != "generic" or cfg.generic is None:
        raise DataError("stream.partitions needs data.source: generic (data.generic.interactions is the bootstrap "
                        "part of the log)", file="config")
    inter = cfg.generic.interactions
    out = [LogFile(inter, None, stream.start)]
    for lo, hi in stream.intervals():
        label = stream.partition_path(lo)
        path = _resolve(label, base_dir)
        if not path.is_file():
            raise DataError(f"partition for interval {lo.isoformat()}..{hi.isoformat()} has not landed (no file at "
                            f"{path})", file=label)
        out.append(LogFile(inter.model_copy(update={"path": label}), lo, hi))
    return out


def _read_log(files: Sequence[LogFile], base_dir: Path | None, required: Sequence[str],
              optional: Sequence[str]) -> _Raw:
    """The files of a partitioned log as one table: the bootstrap file's canonical columns are the table's, a
    partition must have them too (an optional column only a partition has is not read)."""
    first = _read_source(files[0].cmap, base_dir, required, optional)
    cols = [c for c in first.frame.columns if c != "_pos"]
    rest = [c for c in (*required, *optional) if c not in cols]
    parts = [_read_source(f.cmap, base_dir, cols, rest) for f in files[1:]]
    return _Raw.concat([first, *(r.rows(slice(None), columns=cols) for r in parts)])


def _check_windows(raw: _Raw, ts: pd.Series, files: Sequence[LogFile]) -> None:
    """Every row inside its file's window: a row of the wrong day would be in the log for one run and not the next
    (or twice), so the file is wrong, not the row's run."""
    src = raw.frame["_file"].to_numpy()
    hi = pd.DatetimeIndex([f.hi for f in files]).as_unit("us").asi8
    lo = np.where([f.lo is None for f in files], np.iinfo(np.int64).min,
                  pd.DatetimeIndex([f.lo or f.hi for f in files]).as_unit("us").asi8)
    t = ts.array.as_unit("us").asi8
    bad = np.flatnonzero((t < lo[src]) | (t >= hi[src]))
    if not len(bad):
        return
    i = int(bad[0])
    f = files[int(src[i])]
    at = ts.iloc[i].isoformat()
    problem = (f"timestamp {at} is not before stream.start {f.hi.isoformat()}: the bootstrap file holds only what "
               f"happened before it (later rows belong in their interval's partition)" if f.lo is None else
               f"timestamp {at} is outside this partition's interval {f.lo.isoformat()}..{f.hi.isoformat()}")
    raise DataError(problem, file=raw.file_of(i), row=raw.where(i), column=raw.col("timestamp"))


def load_generic(cfg: DataConfig, base_dir: Path | None = None, stream: StreamConfig | None = None) -> Canonical:
    """Any interactions + items (+ optional users) CSV/Parquet files described by ``cfg.generic``; with
    ``stream.partitions`` the interactions are the bootstrap file plus every partition up to ``stream.end``.

    Relative paths resolve against ``base_dir`` (default: the working directory). Without a year column the year
    is taken from a trailing "(1995)" in the title, which is then removed from the title.
    """
    g: GenericSource | None = cfg.generic
    if g is None:
        raise DataError("data.source=generic needs a data.generic section", file="config")
    needed = (*INTERACTION_KEYS, *FEEDBACK_COLUMNS[cfg.feedback])
    optional = tuple(c for c in ("rating",) if c not in needed)
    files = log_files(cfg, stream, base_dir)
    r_inter = (_read_log(files, base_dir, needed, optional) if files
               else _read_source(g.interactions, base_dir, needed, optional))
    # Configured item text columns must be in the file (their values may be blank).
    r_items = _read_source(g.items, base_dir, (*ITEM_REQUIRED, *cfg.item_text_columns), ITEM_OPTIONAL)
    r_users = _read_source(g.users, base_dir, USER_REQUIRED, USER_OPTIONAL) if g.users else None
    out = _assemble(r_inter, r_items, r_users, cfg, genres_sep=g.genres_sep, unit=g.timestamp_unit, log_files=files)
    if files:
        out.stats["partitions_read"] = len(files) - 1
    return out


def sample_users(c: Canonical, n: int, seed: int) -> Canonical:
    """A seeded random subset of ``n`` users with their interactions, and only the items they touched."""
    ids = np.sort(c.interactions["user_id"].unique())
    if n >= len(ids):
        return c
    keep = np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))
    inter = c.interactions[c.interactions["user_id"].isin(keep)].reset_index(drop=True)
    items = c.items[c.items["item_id"].isin(inter["item_id"])].reset_index(drop=True)
    users = c.users[c.users["user_id"].isin(keep)].reset_index(drop=True)
    maps = {e: m[m[f"{e}_id"].isin(keep if e == "user" else items["item_id"])].reset_index(drop=True)
            for e, m in c.id_maps.items()}
    return Canonical(inter, items, users, maps, dict(c.stats))


def load_dataset(cfg: DataConfig, cache_dir: Path, base_dir: Path | None = None,
                 stream: StreamConfig | None = None) -> Canonical:
    """Dispatch on ``cfg.source``, then keep ``cfg.sample_users`` users (seeded) when set. ``stream`` matters only
    with stream.partitions (the log's files up to stream.end); a one-table log is filtered to the interval by the
    caller."""
    if cfg.source == "movielens100k":
        log_files(cfg, stream, base_dir)  # MovieLens has no partitions: an error when stream.partitions is set
        c = load_movielens100k(cfg, cache_dir)
    else:
        c = load_generic(cfg, base_dir, stream)
    if cfg.sample_users:
        c = sample_users(c, cfg.sample_users, cfg.sample_seed)
    return c


def source_fingerprint(cfg: DataConfig, cache_dir: Path, base_dir: Path | None = None) -> dict[str, str]:
    """What the source data is, by content: the pinned wheel's sha256 for MovieLens-100K, the sha256 of every
    file for a generic source (a missing file is a DataError naming it). Part of the ingest tables' recipe."""
    from common.files import file_sha256

    if cfg.source == "movielens100k":
        return {"recbole_wheel_sha256": cfg.recbole_sha256}
    g = cfg.generic
    if g is None:
        raise DataError("data.source=generic needs a data.generic section", file="config")
    out = {}
    for name, cmap in (("interactions", g.interactions), ("items", g.items), ("users", g.users)):
        if cmap is None:
            continue
        path = _resolve(cmap.path, base_dir)
        if not path.is_file():
            raise DataError(f"file not found ({path})", file=cmap.path)
        out[name] = file_sha256(path)
    return out


def partition_fingerprint(cfg: DataConfig, stream: StreamConfig | None,
                          base_dir: Path | None = None) -> dict[str, str]:
    """Every partition read as of stream.end (file as configured -> sha256), oldest first; {} for a one-table log
    or the bootstrap run. Part of the recipe of the tables built from the log, not of the catalogue's."""
    from common.files import file_sha256

    return {f.cmap.path: file_sha256(_resolve(f.cmap.path, base_dir)) for f in log_files(cfg, stream, base_dir)[1:]}


def source_names(cfg: DataConfig) -> dict[str, str]:
    """Table -> file label, as used in DataError messages (for ``validate``)."""
    if cfg.source == "movielens100k":
        return {"interactions": "ml-100k.inter", "items": "ml-100k.item", "users": "ml-100k.user"}
    g = cfg.generic
    assert g is not None
    return {"interactions": g.interactions.path, "items": g.items.path,
            "users": g.users.path if g.users else "users"}


if __name__ == "__main__":
    import sys

    from configs import load_config

    run = load_config(sys.argv[1]) if len(sys.argv) > 1 else None
    data_cfg = run.data if run else DataConfig()
    # A partitioned log is read as of stream.end when the config sets it, else its bootstrap file alone.
    stream_cfg = run.stream if run and run.stream and run.stream.end else None
    canon = load_dataset(data_cfg, (run.workdir_path if run else Path("var")) / "cache", stream=stream_cfg)
    validate(canon, source_names(data_cfg), data_cfg.item_text_columns)
    for name in ("interactions", "items", "users"):
        frame = getattr(canon, name)
        print(name, frame.shape, dict(frame.dtypes.astype(str)))
    print("positive rate", round(float(canon.interactions["label"].mean()), 4))
