"""Canonical interactions/items/users DataFrames from MovieLens-100K or any CSV/Parquet dataset, validated.

Every loader ends in the same three typed frames (see ``Canonical``); bad input raises ``DataError`` with one line
naming the file, the line (1-based, header = line 1) or key, and the column. Nothing is written here: the caller
(``python -m augment ingest``) stores the frames in the feature store.

    python -m augment.ingest configs/ml-latest-small.yaml      # load, validate, print a summary
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from configs import ColumnMap, DataConfig, GenericSource
from augment.data_errors import DataError, decode_utf8
from augment.movielens import fetch_recbole_wheel, read_ml100k

TS_DTYPE = pd.DatetimeTZDtype("us", "UTC")  # pandas 3's default resolution; Parquet timestamp[us, tz=UTC]

INTERACTION_REQUIRED = ("user_id", "item_id", "rating", "timestamp")
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
    """The three canonical tables (RangeIndex, sorted by key; interactions by user, time, item).

    interactions: user_id int64, item_id int64, rating float32, label int8 (rating >= threshold),
                  timestamp datetime64[us, UTC]
    items:        item_id int64, title str, year Int64 (nullable), genres list[str] (object column of lists),
                  then one nullable str (object) column per data.item_text_columns entry, cleaned like titles
    users:        user_id int64, gender/occupation/zip_code str or None, age Int64 (nullable); may have 0 rows
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame


# --------------------------------------------------------------------------------------------------------------
# Raw tables: strings (CSV) or typed values (Parquet) under canonical names, plus where each row came from.


@dataclass
class _Raw:
    file: str
    frame: pd.DataFrame  # canonical column names + "_pos" (1-based line, or row for Parquet)
    unit: str = "line"
    source_columns: Mapping[str, str] = field(default_factory=dict)  # canonical -> name in the file

    def where(self, i: int) -> str:
        return f"{self.unit} {int(self.frame['_pos'].iloc[i])}"

    def col(self, canonical: str) -> str:
        return self.source_columns.get(canonical, canonical)


class _Positions:
    """Locator for frames without source lines: 1-based row positions, canonical column names."""

    def where(self, i: int) -> str:
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


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype("str").str.strip() == "")


def _fail_first(raw: _Raw, mask: pd.Series, column: str, problem) -> None:
    """Raise DataError for the first row where ``mask`` holds; ``problem(value)`` words it."""
    hits = np.flatnonzero(mask.to_numpy(dtype=bool, na_value=True))
    if len(hits):
        i = int(hits[0])
        raise DataError(problem(raw.frame[column].iloc[i]), file=raw.file, row=raw.where(i), column=raw.col(column))


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


def _to_float(raw: _Raw, column: str) -> pd.Series:
    s = _require(raw, column)
    num = pd.to_numeric(s, errors="coerce")
    _fail_first(raw, num.isna() | ~np.isfinite(num.fillna(0)), column, lambda v: f"not a number: {str(v)[:40]!r}")
    return num.astype("float32")


def _to_timestamp(raw: _Raw, column: str, unit: str) -> pd.Series:
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
# Typed tables from raw ones.


def _interactions(raw: _Raw, threshold: float, unit: str) -> pd.DataFrame:
    rating = _to_float(raw, "rating")
    return pd.DataFrame({
        "user_id": _to_int(raw, "user_id"),
        "item_id": _to_int(raw, "item_id"),
        "rating": rating,
        "label": (rating >= threshold).astype("int8"),
        "timestamp": _to_timestamp(raw, "timestamp", unit),
    })


def _items(raw: _Raw, genres_sep: str, lenient_year: bool = False,
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
    return pd.DataFrame({"item_id": _to_int(raw, "item_id"), "title": title.astype("str"),
                         "year": year.astype("Int64"), "genres": genres, **text})


def _users(raw: _Raw | None) -> pd.DataFrame:
    if raw is None:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in USER_DTYPES.items()})
    n = len(raw.frame)
    out = {"user_id": _to_int(raw, "user_id")}
    for col in ("gender", "occupation", "zip_code"):
        out[col] = _to_text(raw, col) if col in raw.frame else pd.Series([None] * n, index=raw.frame.index,
                                                                           dtype="object")
    out["age"] = _to_int(raw, "age", required=False) if "age" in raw.frame else pd.Series(
        pd.NA, index=raw.frame.index, dtype="Int64")
    return pd.DataFrame(out)[list(USER_DTYPES)]


def _finish(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> Canonical:
    inter = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    return Canonical(inter.astype(INTERACTION_DTYPES), items.astype(ITEM_DTYPES), users.astype(USER_DTYPES))


# --------------------------------------------------------------------------------------------------------------
# Checks shared by the loaders (with source line numbers) and by validate() (with row positions).


def _first_duplicate(frame: pd.DataFrame, keys: list[str]) -> tuple[int, int] | None:
    """Positions of the first repeated key and of its first occurrence, or None."""
    repeated = np.flatnonzero(frame.duplicated(keys, keep="first").to_numpy())
    if not len(repeated):
        return None
    group = frame.groupby(keys, sort=False).ngroup().to_numpy()
    second = int(repeated[0])
    return int(np.flatnonzero(group == group[second])[0]), second


def _check_tables(c: Canonical, sources: Mapping[str, str], loc: Mapping[str, _Raw | _Positions]) -> None:
    names = {t: sources.get(t, t) for t in ("interactions", "items", "users")}
    if len(c.interactions) == 0:
        raise DataError("no interactions", file=names["interactions"])
    if len(c.items) == 0:
        raise DataError("no items", file=names["items"])
    for table, frame, keys, label in (("items", c.items, ["item_id"], "item_id"),
                                      ("users", c.users, ["user_id"], "user_id"),
                                      ("interactions", c.interactions, ["user_id", "item_id", "timestamp"],
                                       "interaction (user_id, item_id, timestamp)")):
        found = _first_duplicate(frame, keys)
        if found:
            a, b = found
            key = ", ".join(str(frame[k].iloc[b]) for k in keys)
            key = key if len(keys) == 1 else f"({key})"
            raise DataError(f"duplicate {label} {key} at {loc[table].where(a)} and {loc[table].where(b)}",
                            file=names[table], column=",".join(loc[table].col(k) for k in keys))
    refs = [("item_id", c.items, "items")] + ([("user_id", c.users, "users")] if len(c.users) else [])
    for col, table, tname in refs:
        unknown = np.flatnonzero(~c.interactions[col].isin(table[col]).to_numpy())
        if len(unknown):
            i = int(unknown[0])
            raise DataError(f"{col} {c.interactions[col].iloc[i]} not found in {names[tname]} "
                            f"({len(unknown)} interaction(s) affected)", file=names["interactions"],
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
        required = {"interactions": list(INTERACTION_DTYPES), "items": ["item_id", "title", "genres"],
                    "users": ["user_id"]}[table]
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
    _check_tables(c, names, dict.fromkeys(("interactions", "items", "users"), _Positions()))


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
              lenient_year: bool = False) -> Canonical:
    raws = {"interactions": r_inter, "items": r_items, "users": r_users}
    sources = {t: r.file for t, r in raws.items() if r is not None}
    c = Canonical(_interactions(r_inter, cfg.label_threshold, unit),
                  _items(r_items, genres_sep, lenient_year, cfg.item_text_columns), _users(r_users))
    _check_tables(c, sources, {t: r for t, r in raws.items() if r is not None})
    return _finish(c.interactions, c.items, c.users)


def _line_numbers(text: str, sep: str, n_rows: int) -> np.ndarray:
    """1-based start line of each data record; exact even when quoted fields span lines."""
    physical = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    if physical == n_rows + 1:  # one record per line, the common case: no parsing loop needed
        return np.arange(2, n_rows + 2)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    starts, previous = [], 0
    for _ in reader:
        starts.append(previous + 1)
        previous = reader.line_num
    return np.asarray(starts[1 : n_rows + 1])


def _read_source(cmap: ColumnMap, base_dir: Path | None, required: Sequence[str],
                 optional: Sequence[str]) -> _Raw:
    path = Path(cmap.path)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
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
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            raise DataError(f"unreadable Parquet: {err}", file=label) from None
        frame["_pos"] = np.arange(1, len(frame) + 1)
        unit = "row"
    else:
        text = decode_utf8(path.read_bytes(), label, sep=cmap.sep)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=cmap.sep, dtype=str, keep_default_na=False,
                                skip_blank_lines=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            raise DataError(f"unparseable CSV: {err}", file=label) from None
        frame["_pos"] = _line_numbers(text, cmap.sep, len(frame))
        values = frame.drop(columns="_pos")
        frame = frame[~(values.apply(lambda s: s.str.strip() == "")).all(axis=1)]  # blank lines
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
    return _Raw(label, frame, unit, {canon: src for src, canon in renamed.items()})


def load_generic(cfg: DataConfig, base_dir: Path | None = None) -> Canonical:
    """Any interactions + items (+ optional users) CSV/Parquet files described by ``cfg.generic``.

    Relative paths resolve against ``base_dir`` (default: the working directory). Without a year column the year
    is taken from a trailing "(1995)" in the title, which is then removed from the title.
    """
    g: GenericSource | None = cfg.generic
    if g is None:
        raise DataError("data.source=generic needs a data.generic section", file="config")
    r_inter = _read_source(g.interactions, base_dir, INTERACTION_REQUIRED, ())
    # Configured item text columns must be in the file (their values may be blank).
    r_items = _read_source(g.items, base_dir, (*ITEM_REQUIRED, *cfg.item_text_columns), ITEM_OPTIONAL)
    r_users = _read_source(g.users, base_dir, USER_REQUIRED, USER_OPTIONAL) if g.users else None
    return _assemble(r_inter, r_items, r_users, cfg, genres_sep=g.genres_sep, unit=g.timestamp_unit)


def sample_users(c: Canonical, n: int, seed: int) -> Canonical:
    """A seeded random subset of ``n`` users with their interactions, and only the items they touched."""
    ids = np.sort(c.interactions["user_id"].unique())
    if n >= len(ids):
        return c
    keep = np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False))
    inter = c.interactions[c.interactions["user_id"].isin(keep)].reset_index(drop=True)
    items = c.items[c.items["item_id"].isin(inter["item_id"])].reset_index(drop=True)
    users = c.users[c.users["user_id"].isin(keep)].reset_index(drop=True)
    return Canonical(inter, items, users)


def load_dataset(cfg: DataConfig, cache_dir: Path, base_dir: Path | None = None) -> Canonical:
    """Dispatch on ``cfg.source``, then keep ``cfg.sample_users`` users (seeded) when set."""
    c = load_movielens100k(cfg, cache_dir) if cfg.source == "movielens100k" else load_generic(cfg, base_dir)
    if cfg.sample_users:
        c = sample_users(c, cfg.sample_users, cfg.sample_seed)
    return c


def source_fingerprint(cfg: DataConfig, cache_dir: Path, base_dir: Path | None = None) -> dict[str, str]:
    """What the source data is, by content: the pinned wheel's sha256 for MovieLens-100K, the sha256 of every
    file for a generic source (a missing file is a DataError naming it). Part of the ingest tables' recipe."""
    from feature_store.files import file_sha256

    if cfg.source == "movielens100k":
        return {"recbole_wheel_sha256": cfg.recbole_sha256}
    g = cfg.generic
    if g is None:
        raise DataError("data.source=generic needs a data.generic section", file="config")
    out = {}
    for name, cmap in (("interactions", g.interactions), ("items", g.items), ("users", g.users)):
        if cmap is None:
            continue
        path = Path(cmap.path)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise DataError(f"file not found ({path})", file=cmap.path)
        out[name] = file_sha256(path)
    return out


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
    canon = load_dataset(data_cfg, (run.workdir_path if run else Path("var")) / "cache")
    validate(canon, source_names(data_cfg), data_cfg.item_text_columns)
    for name in ("interactions", "items", "users"):
        frame = getattr(canon, name)
        print(name, frame.shape, dict(frame.dtypes.astype(str)))
    print("positive rate", round(float(canon.interactions["label"].mean()), 4))
