"""Point-in-time correct join of label rows with feature tables (no feature from the future leaks in).

For every label row and table: the latest feature row with the same join keys and
event_timestamp <= label time (< with strict=True; and >= label time - ttl when the table has a ttl); static tables
(event_timestamp=None) are a plain left join. DuckDB's ASOF JOIN finds only *which* feature row matches (keys,
times and row numbers go in); the feature values are then gathered with Arrow `take` / numpy, so 64-d vectors
never pass through SQL.

Output: all label columns unchanged and in label row order, then per table its features and a boolean
`<table>__missing`. Feature columns are named `<feature>`, or `<table>__<feature>` with prefix_features=True
(a name clash raises ValueError). Missing rows get the feature's declared default (vectors: zeros).

    from feature_store import FeatureStore, point_in_time_join, vector_matrix
    joined = point_in_time_join(labels_df, FeatureStore("var/feature_store"), {"item_emb": "latest"},
                                prefix_features=True)
    X = vector_matrix(joined["item_emb__emb"])
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_store.store import FeatureStore, vector_matrix
from feature_store.table_spec import Feature, TableSpec, to_arrow

MISSING_SUFFIX = "__missing"


def feature_column_name(table: str, feature: str, prefix_features: bool) -> str:
    return f"{table}__{feature}" if prefix_features else feature


def _label_times(labels: pa.Table, col: str) -> np.ndarray:
    """Label timestamps as int64 microseconds since the epoch, UTC (naive timestamps are taken as UTC)."""
    if col not in labels.column_names:
        raise ValueError(f"labels: no timestamp column {col!r} (have {labels.column_names})")
    ts = labels.column(col)
    if not pa.types.is_timestamp(ts.type):
        raise ValueError(f"labels: column {col!r} must be a timestamp, got {ts.type}")
    if ts.null_count:
        row = int(np.flatnonzero(ts.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(f"labels: column {col!r} row {row} is null")
    # Casting to a tz-aware type keeps the stored instant; naive values are therefore read as UTC.
    us = ts.cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
    return us.to_numpy() if isinstance(us, pa.Array) else np.asarray(us.combine_chunks().to_numpy())


def _label_keys(labels: pa.Table, spec: TableSpec) -> list[pa.ChunkedArray]:
    cols = []
    for k in spec.join_keys:
        if k not in labels.column_names:
            raise ValueError(f"labels: missing join key {k!r} of table {spec.name!r} (have {labels.column_names})")
        col, target = labels.column(k), spec.key_type(k)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        compatible = (pa.types.is_integer(col.type) if pa.types.is_integer(target)
                      else pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
        if not compatible and not pa.types.is_null(col.type):
            raise ValueError(f"labels: join key {k!r} has type {col.type}, table {spec.name!r} needs {target}")
        try:
            cols.append(col.cast(target))
        except pa.ArrowInvalid as e:
            raise ValueError(f"labels: join key {k!r} cannot be cast to {target}: {e}") from None
    return cols


def _match_rows(con: duckdb.DuckDBPyConnection, spec: TableSpec, label_keys: list[pa.ChunkedArray],
                label_us: np.ndarray | None, feat: pa.Table, n: int, strict: bool = False) -> np.ndarray:
    """Index of the matching feature row for every label row, -1 where there is none."""
    keys = [f"k{i}" for i in range(len(spec.join_keys))]
    lab = pa.table({"__row": pa.array(np.arange(n, dtype=np.int64)), **dict(zip(keys, label_keys))})
    fcols: dict[str, Any] = {k: feat.column(src) for k, src in zip(keys, spec.join_keys)}
    fcols["__frow"] = pa.array(np.arange(feat.num_rows, dtype=np.int64))
    on = " AND ".join(f"l.{k} = f.{k}" for k in keys)
    if spec.event_timestamp is None:
        sql = f"SELECT l.__row, coalesce(f.__frow, -1) AS __frow FROM lab l LEFT JOIN feat f ON {on}"
    else:
        lab = lab.append_column("__ts", pa.array(label_us))
        fcols["__ts"] = feat.column(spec.event_timestamp).cast(pa.int64())
        frow = "coalesce(f.__frow, -1)"
        if spec.ttl is not None:
            ttl_us = int(round(spec.ttl.total_seconds() * 1_000_000))
            frow = f"CASE WHEN f.__ts >= l.__ts - {ttl_us} THEN f.__frow ELSE -1 END"
        before = ">" if strict else ">="
        sql = f"SELECT l.__row, {frow} AS __frow FROM lab l ASOF LEFT JOIN feat f ON {on} AND l.__ts {before} f.__ts"
    feat_keys = pa.table(fcols)
    con.register("lab", lab)
    con.register("feat", feat_keys)
    try:
        res = con.execute(sql).fetchnumpy()  # exists (and drains the result) in DuckDB 1.x and 2.x
    finally:
        con.unregister("lab")
        con.unregister("feat")
    rows = np.asarray(res["__row"], dtype=np.int64)
    frows = np.asarray(res["__frow"], dtype=np.int64)
    idx = np.full(n, -1, dtype=np.int64)
    idx[rows] = frows
    return idx


def stream_vectors(batches: Iterable[pa.RecordBatch], idx: np.ndarray, missing: np.ndarray,
                   feature: Feature) -> pa.FixedSizeListArray:
    """Vectors at feature-row numbers `idx` (defaults where `missing`), filled batch by batch from a file.

    Only the output matrix and one batch are in memory: the feature table's vectors are never held whole.
    """
    n, d = len(idx), feature.dim
    out = np.zeros((n, d), dtype=np.float32)
    # int32 positions halve the index arrays (1M labels: ~40 -> ~20 MB); Parquet files here are < 2^31 rows.
    itype = np.int32 if n < 2**31 and (len(idx) == 0 or idx.max() < 2**31) else np.int64
    dst = np.flatnonzero(~missing).astype(itype)
    src = idx[dst].astype(itype)
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]  # sorted by source row: each batch is one contiguous slice
    del order
    start = 0
    for batch in batches:
        end = start + batch.num_rows
        lo, hi = np.searchsorted(src, [start, end])
        if hi > lo:
            out[dst[lo:hi]] = vector_matrix(batch.column(0))[src[lo:hi] - start]
        start = end
    if missing.any():
        out[missing] = feature.default_vector()
    return pa.FixedSizeListArray.from_arrays(pa.array(out.reshape(-1)), d)


def gather_feature(col: pa.ChunkedArray, feature: Feature, idx: np.ndarray, missing: np.ndarray) -> pa.Array:
    """Scalar/list feature values at row numbers `idx`; rows flagged `missing` get the feature's default."""
    n = len(idx)
    taken = col.take(pa.array(np.where(missing, 0, idx), mask=missing)) if len(col) else pa.nulls(n, col.type)
    if isinstance(taken, pa.ChunkedArray):
        taken = taken.combine_chunks()
    if feature.default is not None and missing.any():
        default = feature.default
        default = list(default) if isinstance(default, tuple) else default
        taken = pc.if_else(pa.array(missing), pa.scalar(default, type=col.type), taken)
    return taken


def point_in_time_join(labels: Any, store: FeatureStore, tables: Mapping[str, str],
                       timestamp_col: str = "event_timestamp", prefix_features: bool = False,
                       threads: int | None = None, strict: bool = False) -> pa.Table:
    """Join `labels` (pandas or Arrow) with each `tables[name]` version as of each label's timestamp.

    `strict`: a feature row counts only if its event time is strictly before the label's (a daily run's profiles
    are valid from their cutoff, and a label at the cutoff itself may be the interaction that closed it).
    `threads` caps DuckDB's threads (None: DuckDB's default).
    """
    lab = to_arrow(labels, where="labels")
    n = lab.num_rows
    out_names = list(lab.column_names)
    out_cols: list[Any] = [lab.column(c) for c in out_names]
    label_us: np.ndarray | None = None
    matched = []
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        for name, version in tables.items():
            snap = store.open_version(name, version)  # holds the file open: later reads see this same version
            spec = snap.spec
            if spec.event_timestamp is not None and label_us is None:
                label_us = _label_times(lab, timestamp_col)
            # Keys, times and scalar features are read whole; vectors are streamed into the output below.
            small = [*spec.join_keys, *([spec.event_timestamp] if spec.event_timestamp else []),
                     *(f.name for f in spec.features if f.dtype != "vector")]
            feat = snap.read(small)
            idx = _match_rows(con, spec, _label_keys(lab, spec), label_us, feat, n, strict)
            matched.append((name, snap, feat.select([f.name for f in spec.features if f.dtype != "vector"]), idx))
    finally:
        con.close()  # DuckDB keeps ~100 MB of buffers per 1M labels until closed: free them before gathering
    pa.default_memory_pool().release_unused()
    for name, snap, feat, idx in matched:
        missing = idx < 0
        for f in snap.spec.features:
            out_names.append(feature_column_name(name, f.name, prefix_features))
            if f.dtype == "vector":
                out_cols.append(stream_vectors(snap.iter_batches([f.name]), idx, missing, f))
            else:
                out_cols.append(gather_feature(feat.column(f.name), f, idx, missing))
        out_names.append(f"{name}{MISSING_SUFFIX}")
        out_cols.append(pa.array(missing))
    dup = sorted({c for c in out_names if out_names.count(c) > 1})
    if dup:
        raise ValueError(f"point_in_time_join: output column names clash: {dup} "
                         f"(use prefix_features=True to name features <table>__<feature>)")
    return pa.table(dict(zip(out_names, out_cols)))
