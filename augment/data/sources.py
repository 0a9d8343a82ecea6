"""Reading a dataset's source files: CSV (BOM, CRLF, any separator) or Parquet, a daily log split into partition
files, and the fingerprints that name a source by its content.

    from augment.data.sources import read_source, log_files, source_fingerprint
"""
from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from augment.data.errors import DataError, decode_utf8
from augment.data.raw_columns import RawColumns
from configs import ColumnMap, DataConfig, StreamConfig


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


def read_csv(path: Path, label: str, sep: str) -> pd.DataFrame:
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


def read_source(cmap: ColumnMap, base_dir: Path | None, required: Sequence[str],
                 optional: Sequence[str]) -> RawColumns:
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
        frame = read_csv(path, label, cmap.sep)
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
    return RawColumns(label, frame, unit, {canon: src for src, canon in renamed.items()}, line_of)


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


def read_log(files: Sequence[LogFile], base_dir: Path | None, required: Sequence[str],
              optional: Sequence[str]) -> RawColumns:
    """The files of a partitioned log as one table: the bootstrap file's canonical columns are the table's, a
    partition must have them too (an optional column only a partition has is not read)."""
    first = read_source(files[0].cmap, base_dir, required, optional)
    cols = [c for c in first.frame.columns if c != "_pos"]
    rest = [c for c in (*required, *optional) if c not in cols]
    parts = [read_source(f.cmap, base_dir, cols, rest) for f in files[1:]]
    return RawColumns.concat([first, *(r.rows(slice(None), columns=cols) for r in parts)])


def check_windows(raw: RawColumns, ts: pd.Series, files: Sequence[LogFile]) -> None:
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
