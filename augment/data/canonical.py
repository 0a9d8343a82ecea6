"""The canonical frames every loader ends in (interactions, items, users and the id maps): ids of any type to
int64 keys, typed columns, the label from data.feedback, and the duplicate policy, in one sort.

    from augment.data.canonical import Canonical, IdCoder, finish_tables
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from augment.data.errors import DataError
from augment.data.raw_columns import (
    TS_DTYPE,
    RawColumns,
    as_strings,
    fail_first,
    require_column,
    split_genres,
    to_float,
    to_int,
    to_text,
    to_timestamp,
    year_from_title,
)
from augment.data.sorting import int_columns, neighbour_equal, repeats_if_sorted, sort_order
from common.id_keys import IdType, infer_id_type, is_canonical_int, keys_for, show_id
from configs import DataConfig

INTERACTION_KEYS = ("user_id", "item_id", "timestamp")


# The columns each feedback kind needs on top of the keys (data.feedback); "rating" is optional for the others.
FEEDBACK_COLUMNS = {"rating": ("rating",), "label": ("label",), "event": ("event",), "positive_only": ()}


INTERACTION_REQUIRED = (*INTERACTION_KEYS, "rating")  # MovieLens and the default rating feedback


INTERACTION_DTYPES = {"user_id": "int64", "item_id": "int64", "rating": "float32", "label": "int8",
                      "timestamp": TS_DTYPE}


ITEM_DTYPES = {"item_id": "int64", "title": "str", "year": "Int64", "genres": "object"}


USER_DTYPES = {"user_id": "int64", "gender": "object", "age": "Int64", "occupation": "object", "zip_code": "object"}


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


def _id_codes(raw: RawColumns, column: str) -> pa.DictionaryArray:
    """An id column dictionary-encoded, its dictionary trimmed (a Parquet int column becomes its decimal text).
    Per-row work is one hash pass; trimming, type checks and hashing then touch each distinct id once."""
    s = raw.frame[column]
    text = as_strings(s)
    if text is None:
        if pd.api.types.is_float_dtype(s.dtype):  # 7.0 from a float column is id 7, 7.5 is not an id
            fail_first(raw, s.notna() & (s != s.round()), column, lambda v: f"not an integer id: {v!r}")
            s = s.astype("Int64")
        text = pa.array(s.astype("str").where(s.notna(), ""), type=pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks else pa.array([], pa.string())
    codes = pc.dictionary_encode(text)
    codes = pa.DictionaryArray.from_arrays(codes.indices, pc.utf8_trim_whitespace(codes.dictionary))
    blank = np.asarray(pc.equal(codes.dictionary, "").to_numpy(zero_copy_only=False), dtype=bool)
    if blank.any():
        fail_first(raw, blank[codes.indices.to_numpy(zero_copy_only=False)], column,
                    lambda v: "empty value in a required column")
    return codes


def _label(raw: RawColumns, cfg: DataConfig, rating: pd.Series) -> pd.Series:
    if cfg.feedback == "rating":
        return (rating >= cfg.label_threshold).astype("int8")
    if cfg.feedback == "positive_only":
        return pd.Series(1, index=raw.frame.index, dtype="int8")
    if cfg.feedback == "event":
        event = require_column(raw, "event").astype("str").str.strip()
        return event.isin(cfg.positive_events).astype("int8")
    s = require_column(raw, "label").astype("str").str.strip().str.lower()
    value = s.map({"1": 1, "0": 0, "true": 1, "false": 0, "1.0": 1, "0.0": 0})
    fail_first(raw, value.isna(), "label", lambda v: f"not a 0/1 label: {str(v)[:40]!r}")
    return value.astype("int8")


@dataclass
class IdCoder:
    """The id columns of one entity in every file that has them (dictionary-encoded, trimmed) and their type."""

    entity: str
    columns: list[tuple[RawColumns, str, pa.DictionaryArray]]  # (file, canonical column, codes)
    id_type: IdType = "int"
    _keys: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def collect(cls, entity: str, declared: str, sources: list[tuple[RawColumns, str]]) -> "IdCoder":
        cols = [(raw, col, _id_codes(raw, col)) for raw, col in sources]
        if declared == "auto":
            id_type: IdType = infer_id_type(*(codes.dictionary for _, _, codes in cols))
        else:
            id_type = declared  # type: ignore[assignment]
        if id_type == "int":
            for raw, col, codes in cols:
                bad = ~np.asarray(is_canonical_int(codes.dictionary).to_numpy(zero_copy_only=False), dtype=bool)
                if bad.any():
                    fail_first(raw, bad[codes.indices.to_numpy(zero_copy_only=False)], col,
                                lambda v: f"not a canonical integer id: {str(v).strip()[:40]!r} (data.id_types."
                                          f"{entity} is int; set it to string for ids such as '007' or 'B00004TKSE')")
        return cls(entity, cols, id_type)

    def original(self, raw: RawColumns, i: int) -> str:
        """Row `i`'s id as the file spells it (trimmed), quoted as messages quote it."""
        codes = next(c for r, _, c in self.columns if r is raw)
        return show_id(codes.dictionary[codes.indices[i].as_py()].as_py(), self.id_type)

    @functools.cached_property
    def distinct(self) -> tuple[pa.Array, np.ndarray]:
        """(every distinct id over the files, its key): each string id is hashed once, however often it occurs."""
        ids = pc.unique(pa.chunked_array([c.dictionary for _, _, c in self.columns], type=pa.string()))
        return ids, keys_for(ids, self.id_type)

    def keys(self, raw: RawColumns) -> np.ndarray:
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


def interactions_frame(raw: RawColumns, cfg: DataConfig, unit: str, users: IdCoder, items: IdCoder) -> pd.DataFrame:
    has_rating = "rating" in raw.frame
    rating = (to_float(raw, "rating", required=cfg.feedback == "rating") if has_rating
              else pd.Series(np.nan, index=raw.frame.index, dtype="float32"))
    if cfg.rating_range is not None and has_rating:
        lo, hi = cfg.rating_range
        fail_first(raw, (rating < lo) | (rating > hi), "rating",
                    lambda v: f"rating {str(v).strip()} outside data.rating_range [{lo:g}, {hi:g}]")
    return pd.DataFrame({
        "user_id": users.keys(raw),
        "item_id": items.keys(raw),
        "rating": rating,
        "label": _label(raw, cfg, rating),
        "timestamp": to_timestamp(raw, "timestamp", unit),
    }, index=raw.frame.index)


def items_frame(raw: RawColumns, genres_sep: str, ids: IdCoder, lenient_year: bool = False,
           text_columns: Sequence[str] = ()) -> pd.DataFrame:
    title = to_text(raw, "title", required=True).astype("str")
    if "year" in raw.frame and not lenient_year:
        year = to_int(raw, "year", required=False)
    else:
        stripped, title_year = year_from_title(title)
        if "year" in raw.frame:  # ML-100K: the year column has junk ("V", "unkonwn"); fall back to the title
            col_year = pd.to_numeric(raw.frame["year"], errors="coerce").astype("Int64")
            year = col_year.fillna(title_year)
            title = title.where(col_year.notna(), stripped)
        else:
            year, title = title_year, stripped
    genres = (split_genres(raw.frame["genres"], genres_sep) if "genres" in raw.frame
              else pd.Series([[] for _ in range(len(raw.frame))], index=raw.frame.index, dtype="object"))
    # Item text (descriptions etc.): nullable, cleaned like a title but not capped (prompts cap what they show).
    text = {col: to_text(raw, col) for col in text_columns}
    return pd.DataFrame({"item_id": ids.keys(raw), "title": title.astype("str"),
                         "year": year.astype("Int64"), "genres": genres, **text})


def users_frame(raw: RawColumns | None, ids: IdCoder) -> pd.DataFrame:
    if raw is None:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in USER_DTYPES.items()})
    n = len(raw.frame)
    out = {"user_id": pd.Series(ids.keys(raw), index=raw.frame.index)}
    for col in ("gender", "occupation", "zip_code"):
        out[col] = to_text(raw, col) if col in raw.frame else pd.Series([None] * n, index=raw.frame.index,
                                                                           dtype="object")
    out["age"] = to_int(raw, "age", required=False) if "age" in raw.frame else pd.Series(
        pd.NA, index=raw.frame.index, dtype="Int64")
    return pd.DataFrame(out)[list(USER_DTYPES)]


def finish_tables(inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
            interactions_sorted: bool = False) -> Canonical:
    if not interactions_sorted:
        inter = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    return Canonical(inter.astype(INTERACTION_DTYPES), items.astype(ITEM_DTYPES), users.astype(USER_DTYPES))


def first_duplicate(frame: pd.DataFrame, keys: list[str], sorted_by: list[str] | None = None
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


def sort_and_drop_duplicates(inter: pd.DataFrame, raw: RawColumns, policy: str,
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
