"""The loaders: canonical interactions/items/users DataFrames from MovieLens-100K or any CSV/Parquet dataset,
validated (the parts: raw_columns.py types cells, sources.py reads files, canonical.py builds the frames,
canonical_checks.py checks them).

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

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from augment.data.canonical import (
    FEEDBACK_COLUMNS,
    INTERACTION_KEYS,
    INTERACTION_REQUIRED,
    Canonical,
    IdCoder,
    finish_tables,
    interactions_frame,
    items_frame,
    sample_users,
    sort_and_drop_duplicates,
    users_frame,
)
from augment.data.canonical_checks import check_tables, validate
from augment.data.errors import DataError
from augment.data.movielens import fetch_recbole_wheel, read_ml100k
from augment.data.raw_columns import RawColumns
from augment.data.sources import LogFile, check_windows, log_files, read_log, read_source, source_names
from configs import DataConfig, GenericSource, StreamConfig

ITEM_REQUIRED, ITEM_OPTIONAL = ("item_id", "title"), ("genres", "year")
USER_REQUIRED, USER_OPTIONAL = ("user_id",), ("gender", "age", "occupation", "zip_code")


def assemble(r_inter: RawColumns, r_items: RawColumns, r_users: RawColumns | None, cfg: DataConfig, genres_sep: str, unit: str,
              lenient_year: bool = False, log_files: Sequence[LogFile] = ()) -> Canonical:
    """The canonical tables from raw ones; `log_files` (stream.partitions) are the files of `r_inter`, in order,
    whose time windows its rows must lie in."""
    raws = {"interactions": r_inter, "items": r_items, "users": r_users}
    sources = {t: r.file for t, r in raws.items() if r is not None}
    item_ids = IdCoder.collect("item", cfg.id_types.item, [(r_items, "item_id"), (r_inter, "item_id")])
    user_ids = IdCoder.collect("user", cfg.id_types.user, [(r_inter, "user_id")] + (
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

    inter = interactions_frame(r_inter, cfg, unit, user_ids, item_ids)
    if log_files:
        check_windows(r_inter, inter["timestamp"], log_files)
    n_rows = len(inter)
    inter, source_row = sort_and_drop_duplicates(
        inter, r_inter, cfg.duplicates,
        lambda i: f"({show('interactions.user_id', i)}, {show('interactions.item_id', i)}, "
                  f"{inter['timestamp'].iloc[i]})")
    c = Canonical(inter, items_frame(r_items, genres_sep, item_ids, lenient_year, cfg.item_text_columns),
                  users_frame(r_users, user_ids))
    r_kept = r_inter.rows(source_row, columns=("_pos",))  # locates the canonical rows in the source file
    check_tables(c, sources, {"interactions": r_kept, "items": r_items, "users": r_users}, show,
                  unique_already=("interactions",))
    out = finish_tables(c.interactions, c.items, c.users, interactions_sorted=True)
    out.id_maps = id_maps
    out.stats = {"rows_read": n_rows, "duplicates_dropped": n_rows - len(inter),
                 "user_id_type": user_ids.id_type, "item_id_type": item_ids.id_type}
    return out


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
    r_inter = RawColumns("ml-100k.inter", raw["inter"].rename(columns={"_line": "_pos"}))
    r_items = RawColumns("ml-100k.item", raw["item"].rename(
        columns={"movie_title": "title", "release_year": "year", "class": "genres", "_line": "_pos"}))
    r_users = RawColumns("ml-100k.user", raw["user"].rename(columns={"_line": "_pos"}))
    return assemble(r_inter, r_items, r_users, cfg, genres_sep=" ", unit="s", lenient_year=True)


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
    r_inter = (read_log(files, base_dir, needed, optional) if files
               else read_source(g.interactions, base_dir, needed, optional))
    # Configured item text columns must be in the file (their values may be blank).
    r_items = read_source(g.items, base_dir, (*ITEM_REQUIRED, *cfg.item_text_columns), ITEM_OPTIONAL)
    r_users = read_source(g.users, base_dir, USER_REQUIRED, USER_OPTIONAL) if g.users else None
    out = assemble(r_inter, r_items, r_users, cfg, genres_sep=g.genres_sep, unit=g.timestamp_unit, log_files=files)
    if files:
        out.stats["partitions_read"] = len(files) - 1
    return out


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
