"""The checks every canonical dataset passes before it is stored: keys, ranges, references between the tables, each
failure one line naming the file, the row or key and the column.

    from augment.data.canonical_checks import validate
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from augment.data.canonical import INTERACTION_DTYPES, ITEM_DTYPES, USER_DTYPES, Canonical, first_duplicate
from augment.data.errors import DataError
from augment.data.raw_columns import Positions, RawColumns, clean_text


def check_tables(c: Canonical, sources: Mapping[str, str], loc: Mapping[str, RawColumns | Positions],
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
        found = first_duplicate(frame, keys, ["user_id", "timestamp", "item_id"] if table == "interactions"
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
    check_tables(c, names, {t: Positions(f) for t, f in names.items()})
