"""External text ("bring your own text"): a file of item or user text published as the *_text table that LLM
generation would publish, so encoding and every CTR variant use it exactly as generated text.

The file is CSV (UTF-8, a BOM and CRLF line ends are fine) or Parquet with the columns

    item_id | user_id     the ORIGINAL ids of the source data (as strings or ints)
    text                  the text; it goes through the same checks as generated text (augment/text/output_validation.py):
                          a rejected row (blank, too short, degenerate, refusal) is published with text "" and its
                          flag, and gets no vector
    event_timestamp       optional; epoch seconds or ISO 8601. Missing (column or value): for items 1970-01-01 UTC
                          (catalogue knowledge, valid at all times), for users the user's history cutoff from the
                          pinned user_cutoffs table, so a point-in-time join never shows a sample a profile that is
                          dated after it. A profile that was *written* from later data must carry its own time.

Every id must be in the pinned items table (items) or user_cutoffs table (users: every user with a history), ids
are unique (a repeat names both lines), and any problem is one DataError naming file, line and column; nothing is
published then. Published rows: model "external:<source>", template columns "", token counts 0, finish_reason
"external", attempts 1, created_timestamp = event_timestamp (the file's time, never the import clock: the same
file gives the same bytes).

    python -m augment import-text --config configs/ml-latest-small-tags.yaml --kind item \
        --file var/ml_latest_tags.csv --source movielens-tags
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from augment.data.canonical import first_duplicate
from augment.data.errors import DataError
from augment.data.raw_columns import TS_DTYPE, RawColumns, blank_cells, fail_first, require_column, to_timestamp
from augment.data.sources import read_source
from augment.kinds import importable_kinds, kind_spec
from augment.text.output_validation import check_output
from configs import ColumnMap, ValidationConfig

KEY = {k.name: k.key for k in importable_kinds()}  # kind -> the id column of its files (augment/kinds.py)
SOURCE_NAME = re.compile(r"[\w.+-]{1,64}")


def read_text_file(path: Path, kind: str) -> RawColumns:
    """The file's key, text and (if present) event_timestamp columns with their line numbers; errors name the
    file by its name."""
    return read_source(ColumnMap(path=path.name), path.parent, (kind_spec(kind).key, "text"), ("event_timestamp",))


def _to_keys(raw: RawColumns, column: str, id_map: pd.DataFrame, map_label: str) -> pd.Series:
    """The file's original ids (exact text, trimmed) as the tables' join keys, through the pinned id map
    (common/id_keys.py); an id the source data does not have is an error quoting it."""
    s = require_column(raw, column)
    text = (s.astype("int64").astype("str") if pd.api.types.is_integer_dtype(s.dtype)
            else s.astype("str").str.strip())
    lookup = pd.Series(id_map[column].to_numpy(), index=id_map["source_id"].astype("str").to_numpy())
    keys = pd.Series(lookup.reindex(text.to_numpy()).to_numpy(), index=s.index)
    missing = keys.isna()
    fail_first(raw, missing, column, lambda v: f"{column} {str(v).strip()!r} not found in {map_label} "
                                                f"({int(missing.sum())} row(s) affected)")
    return keys.astype("int64")


def _event_times(raw: RawColumns, keys: pd.Series, default: pd.Timestamp | pd.Series) -> pd.Series:
    """event_timestamp per row: the file's value where given, else ``default`` (one time, or per key)."""
    fallback = (default.reindex(keys).to_numpy() if isinstance(default, pd.Series)
                else np.full(len(keys), default))
    out = pd.Series(fallback, index=keys.index).astype(TS_DTYPE)
    if "event_timestamp" not in raw.frame:
        return out
    given = ~blank_cells(raw.frame["event_timestamp"])
    if given.any():
        sub = raw.rows(given.to_numpy())
        out[given.to_numpy()] = to_timestamp(sub, "event_timestamp", "s").to_numpy()
    return out


def load_external_text(path: Path, kind: str, known: pd.Series, default_time: pd.Timestamp | pd.Series | None,
                       source: str, validation: ValidationConfig, known_label: str, id_map: pd.DataFrame,
                       map_label: str, before: pd.Timestamp | None = None) -> pd.DataFrame:
    """The *_text frame of ``kind`` from ``path``; ``known`` are the valid keys (``known_label`` names their table
    in errors), ``default_time`` the event time of rows without one (a Series is indexed by key), ``id_map`` the
    pinned <kind>_id_map (original id -> key; ``map_label`` names it).

    A daily run (``before`` = its interval end, ``default_time`` None) reads a file that grows: every row must carry
    its event_timestamp, a key may have one row per time, and rows at or after ``before`` have not landed yet and
    are left out (the run never sees the future, and a re-run of an old interval reads the same rows)."""
    key = kind_spec(kind).key
    raw = read_text_file(path, kind)
    if len(raw.frame) == 0:
        raise DataError("no rows", file=raw.file)
    keys = _to_keys(raw, key, id_map, map_label)
    if before is not None:
        times = raw.frame["event_timestamp"] if "event_timestamp" in raw.frame else pd.Series(None, index=keys.index)
        fail_first(raw, blank_cells(times), "event_timestamp" if "event_timestamp" in raw.frame else key,
                   lambda v: "a daily run needs an event_timestamp on every row of an external text file (when "
                             "the text was written)")
        event_ts = _event_times(raw, keys, pd.Timestamp(0, tz="UTC"))
        landed = (event_ts < before).to_numpy()
        raw = raw.rows(landed)
        keys, event_ts = keys[landed].reset_index(drop=True), event_ts[landed].reset_index(drop=True)
        if len(raw.frame) == 0:
            raise DataError(f"no row before this run's interval end {before.isoformat()}", file=raw.file)
        dup_keys = pd.DataFrame({key: keys.to_numpy(), "t": event_ts.to_numpy()})
    else:
        dup_keys = pd.DataFrame({key: keys.to_numpy()})
    found = first_duplicate(dup_keys, list(dup_keys.columns))
    if found:
        a, b = found
        raise DataError(f"duplicate {key} {str(raw.frame[key].iloc[b]).strip()}"
                        f"{' and event_timestamp' if before is not None else ''} at {raw.where(a)} and "
                        f"{raw.where(b)}", file=raw.file, column=raw.col(key))
    unknown = ~keys.isin(known)
    fail_first(raw, unknown.to_numpy(), key, lambda v: f"{key} {str(v).strip()} not found in {known_label} "
                                                        f"({int(unknown.sum())} row(s) affected)")
    # Missing user cutoffs cannot happen after the check above when `known` is the cutoff table's keys.
    if before is None:
        event_ts = _event_times(raw, keys, default_time)
    texts = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in raw.frame["text"]]
    verdicts = [check_output(t, "stop", validation) for t in texts]
    n = len(keys)
    out = pd.DataFrame({
        key: keys.to_numpy(),
        "text": [v.text for v in verdicts],
        "model": f"external:{source}",
        "template_name": "", "template_version": "", "prompt_hash": "",
        "prompt_tokens": np.zeros(n, dtype="int32"), "output_tokens": np.zeros(n, dtype="int32"),
        "finish_reason": "external",
        "flag": [v.flag for v in verdicts],
        "attempts": np.ones(n, dtype="int32"),
        "event_timestamp": event_ts.to_numpy(),
        "created_timestamp": event_ts.to_numpy(),
    })
    return out.sort_values([key, "event_timestamp"], kind="stable").reset_index(drop=True)


def check_source_name(source: str) -> str:
    if not SOURCE_NAME.fullmatch(source):
        raise ValueError(f"source name {source!r}: 1-64 letters, digits, '_', '.', '+' or '-'")
    return source


__all__ = ["load_external_text", "read_text_file", "check_source_name", "KEY"]
