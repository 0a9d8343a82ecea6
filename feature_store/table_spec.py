"""Feature table definitions (Feast vocabulary) and the schema check applied to every write.

A `TableSpec` names an entity, its join keys, an optional event/created timestamp and typed `Feature`s.
`conform(spec, data)` turns a pandas DataFrame or Arrow table into exactly `spec.arrow_schema()` or raises a
one-line `SchemaError` naming the table, column and first offending row/key.

    python -c "from feature_store.table_spec import *; print(TableSpec('t','item',('item_id',),(Feature('x','float32'),)).arrow_schema())"
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Dtype = Literal["int64", "int32", "int8", "float32", "float64", "string", "bool", "timestamp", "vector", "list_string"]
KeyDtype = Literal["int64", "string"]
DTYPES: tuple[str, ...] = ("int64", "int32", "int8", "float32", "float64", "string", "bool", "timestamp", "vector",
                           "list_string")
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


class SchemaError(ValueError):
    """Data does not match its TableSpec (message: one line naming table, column, first offending row/key)."""


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: Dtype
    dim: int | None = None  # required for vector
    vector_dtype: Literal["float16", "float32"] = "float32"  # stored as fixed_size_list<dim>
    default: object = None  # value for missing rows in joins/lookups (vectors: zeros if None)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"feature name must be a non-empty string, got {self.name!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"feature {self.name!r}: unknown dtype {self.dtype!r} (one of {', '.join(DTYPES)})")
        if self.dtype == "vector":
            if not isinstance(self.dim, int) or self.dim <= 0:
                raise ValueError(f"feature {self.name!r}: vector needs a positive int dim, got {self.dim!r}")
            if self.vector_dtype not in ("float16", "float32"):
                raise ValueError(f"feature {self.name!r}: vector_dtype must be float16 or float32")
        elif self.dim is not None:
            raise ValueError(f"feature {self.name!r}: dim is only for vectors")
        # Normalised so specs round-trip through the JSON manifest and stay hashable.
        object.__setattr__(self, "default", _normalise_default(self))

    def arrow_type(self) -> pa.DataType:
        if self.dtype == "vector":
            return pa.list_(pa.float16() if self.vector_dtype == "float16" else pa.float32(), self.dim)
        return _SCALAR_TYPES[self.dtype]

    def default_vector(self) -> np.ndarray:
        """The vector used for missing rows: the declared default, else zeros."""
        assert self.dtype == "vector"
        if self.default is None:
            return np.zeros(self.dim, dtype=np.float32)
        return np.asarray(self.default, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.dtype == "vector":
            d["dim"] = self.dim
            d["vector_dtype"] = self.vector_dtype
        default = self.default
        if isinstance(default, dt.datetime):
            default = default.isoformat()
        elif isinstance(default, tuple):
            default = list(default)
        d["default"] = default
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Feature":
        return cls(name=d["name"], dtype=d["dtype"], dim=d.get("dim"), vector_dtype=d.get("vector_dtype", "float32"),
                   default=d.get("default"))


_SCALAR_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(), "int32": pa.int32(), "int8": pa.int8(), "float32": pa.float32(), "float64": pa.float64(),
    "string": pa.string(), "bool": pa.bool_(), "timestamp": TIMESTAMP_TYPE, "list_string": pa.list_(pa.string()),
}
_KEY_TYPES: dict[str, pa.DataType] = {"int64": pa.int64(), "string": pa.string()}


def _normalise_default(f: Feature) -> object:
    v = f.default
    if v is None:
        return None
    where = f"feature {f.name!r}: default {v!r}"
    if f.dtype == "vector":
        arr = np.asarray(v, dtype=np.float64).ravel()
        if arr.shape[0] != f.dim:
            raise ValueError(f"{where} has length {arr.shape[0]}, expected dim={f.dim}")
        return tuple(float(x) for x in arr)
    if f.dtype == "list_string":
        return tuple(str(x) for x in v)
    if f.dtype == "timestamp":
        ts = dt.datetime.fromisoformat(v) if isinstance(v, str) else v
        if not isinstance(ts, dt.datetime) or ts.tzinfo is None:
            raise ValueError(f"{where} must be a tz-aware datetime or ISO string")
        return ts.astimezone(dt.timezone.utc)
    if f.dtype.startswith("int"):
        if isinstance(v, bool) or int(v) != v:
            raise ValueError(f"{where} is not an integer")
        return int(v)
    if f.dtype.startswith("float"):
        return float(v)
    if f.dtype == "bool":
        return bool(v)
    return str(v)


@dataclass(frozen=True)
class TableSpec:
    name: str
    entity: str  # e.g. "item", "user", "interaction"
    join_keys: tuple[str, ...]  # e.g. ("item_id",); composite allowed
    features: tuple[Feature, ...]
    event_timestamp: str | None = "event_timestamp"  # tz-aware UTC column, or None for static tables
    created_timestamp: str | None = "created_timestamp"
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    ttl: dt.timedelta | None = None
    # Extension beyond Feast's vocabulary: join keys are int64 unless declared "string" here.
    key_dtypes: Mapping[str, KeyDtype] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "join_keys", tuple(self.join_keys))
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "tags", dict(self.tags))
        object.__setattr__(self, "key_dtypes", dict(self.key_dtypes))
        if not self.name or "/" in self.name or self.name.startswith((".", "_")) or "@" in self.name:
            raise ValueError(f"table name {self.name!r} must be non-empty, without '/', '@', leading '.' or '_'")
        if not self.join_keys:
            raise ValueError(f"table {self.name!r}: needs at least one join key")
        names = [*self.join_keys, *(c for c in (self.event_timestamp, self.created_timestamp) if c),
                 *(f.name for f in self.features)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"table {self.name!r}: column names used twice: {dup}")
        for k, t in self.key_dtypes.items():
            if k not in self.join_keys or t not in _KEY_TYPES:
                raise ValueError(f"table {self.name!r}: key_dtypes[{k!r}]={t!r} must name a join key, int64|string")
        if self.ttl is not None and (self.event_timestamp is None or self.ttl <= dt.timedelta(0)):
            raise ValueError(f"table {self.name!r}: ttl must be positive and needs an event_timestamp")

    def key_type(self, key: str) -> pa.DataType:
        return _KEY_TYPES[self.key_dtypes.get(key, "int64")]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"table {self.name!r} has no feature {name!r} (has {[f.name for f in self.features]})")

    def arrow_schema(self) -> pa.Schema:
        """Column order: join keys, event timestamp, created timestamp, features."""
        fields = [pa.field(k, self.key_type(k), nullable=False) for k in self.join_keys]
        for ts in (self.event_timestamp, self.created_timestamp):
            if ts:
                fields.append(pa.field(ts, TIMESTAMP_TYPE, nullable=ts != self.event_timestamp))
        fields += [pa.field(f.name, f.arrow_type()) for f in self.features]
        return pa.schema(fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "entity": self.entity, "join_keys": list(self.join_keys),
            "key_dtypes": {k: self.key_dtypes.get(k, "int64") for k in self.join_keys},
            "features": [f.to_dict() for f in self.features],
            "event_timestamp": self.event_timestamp, "created_timestamp": self.created_timestamp,
            "description": self.description, "owner": self.owner, "tags": dict(self.tags),
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TableSpec":
        ttl = d.get("ttl_seconds")
        key_dtypes = {k: v for k, v in d.get("key_dtypes", {}).items() if v != "int64"}
        return cls(name=d["name"], entity=d["entity"], join_keys=tuple(d["join_keys"]),
                   features=tuple(Feature.from_dict(f) for f in d["features"]),
                   event_timestamp=d.get("event_timestamp"), created_timestamp=d.get("created_timestamp"),
                   description=d.get("description", ""), owner=d.get("owner", ""), tags=d.get("tags", {}),
                   ttl=None if ttl is None else dt.timedelta(seconds=ttl), key_dtypes=key_dtypes)


# ----------------------------------------------------------------------------------------------- schema check

def _err(spec: TableSpec, column: str, msg: str) -> SchemaError:
    return SchemaError(f"table {spec.name!r}, column {column!r}: {msg}")


def _first_true(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))[0])


def to_arrow(data: Any, where: str = "data") -> pa.Table:
    """pandas DataFrame or Arrow table -> Arrow table (a named pandas index becomes columns)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        if any(n is not None for n in data.index.names):
            data = data.reset_index()
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"{where}: expected a pandas DataFrame or pyarrow Table, got {type(data).__name__}")


def _cast(spec: TableSpec, name: str, col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    src = col.type
    if pa.types.is_dictionary(src):
        col = col.cast(src.value_type)
        src = col.type
    if src == target:
        return col
    if pa.types.is_null(src):
        return pa.nulls(len(col), target) if len(col) else pa.chunked_array([], target)
    ok = False
    if pa.types.is_integer(target):
        ok = pa.types.is_integer(src)
    elif pa.types.is_floating(target):
        ok = pa.types.is_integer(src) or pa.types.is_floating(src)
    elif pa.types.is_string(target):
        ok = pa.types.is_string(src) or pa.types.is_large_string(src) or pa.types.is_string_view(src)
    elif pa.types.is_timestamp(target):
        if pa.types.is_timestamp(src):
            if src.tz is None:
                raise _err(spec, name, f"timestamp has no time zone (need tz-aware UTC), got {src}")
            ok = True
    elif pa.types.is_fixed_size_list(target):
        return _cast_vector(spec, name, col, target)
    elif pa.types.is_list(target):
        ok = (pa.types.is_list(src) or pa.types.is_large_list(src) or pa.types.is_fixed_size_list(src)) and (
            pa.types.is_string(src.value_type) or pa.types.is_large_string(src.value_type)
            or pa.types.is_null(src.value_type))
    if not ok:
        raise _err(spec, name, f"has type {src}, expected {target}")
    try:
        return col.cast(target, safe=not pa.types.is_floating(target))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise _err(spec, name, f"cannot cast {src} to {target} safely: {str(e).splitlines()[0]}") from None


def _cast_vector(spec: TableSpec, name: str, col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    src = col.type
    if not (pa.types.is_list(src) or pa.types.is_large_list(src) or pa.types.is_fixed_size_list(src)) or not (
            pa.types.is_floating(src.value_type) or pa.types.is_integer(src.value_type)):
        raise _err(spec, name, f"has type {src}, expected vector {target}")
    dim = target.list_size
    if col.null_count:
        raise _err(spec, name, f"row {_first_true(col.is_null())} is null (vectors may not be null)")
    if not pa.types.is_fixed_size_list(src) or src.list_size != dim:
        lengths = pc.list_value_length(col)
        bad = pc.not_equal(lengths, dim)
        if pc.any(bad).as_py():
            i = _first_true(bad)
            raise _err(spec, name, f"row {i} has vector length {lengths[i].as_py()}, expected {dim}")
    flat = pc.list_flatten(col)
    if flat.null_count:
        # Locate the owning row of the first null element.
        j = _first_true(flat.is_null())
        raise _err(spec, name, f"row {j // dim} has a null vector element")
    values = flat.cast(target.value_type, safe=False)
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pa.chunked_array([pa.FixedSizeListArray.from_arrays(values, dim)], target)


def _key_repr(table: pa.Table, keys: list[str], i: int) -> str:
    vals = [table.column(k)[i].as_py() for k in keys]
    return ", ".join(f"{k}={v.isoformat() if isinstance(v, dt.datetime) else repr(v)}" for k, v in zip(keys, vals))


def conform(spec: TableSpec, data: Any) -> pa.Table:
    """Return `data` cast to exactly spec.arrow_schema() or raise SchemaError (first problem found)."""
    table = to_arrow(data, where=f"table {spec.name!r}")
    schema = spec.arrow_schema()
    have = table.column_names
    dup = [c for c in have if have.count(c) > 1]
    if dup:
        raise _err(spec, dup[0], "appears more than once")
    missing = [f.name for f in schema if f.name not in have]
    if missing:
        raise _err(spec, missing[0], f"is missing (have {have})")
    extra = [c for c in have if c not in schema.names]
    if extra:
        raise _err(spec, extra[0], f"is not declared in the spec (declared: {schema.names})")
    cols = []
    for f in schema:
        col = _cast(spec, f.name, table.column(f.name), f.type)
        if not f.nullable and col.null_count:
            raise _err(spec, f.name, f"row {_first_true(col.is_null())} is null")
        cols.append(col)
    out = pa.Table.from_arrays(cols, schema=schema)
    _check_unique(spec, out)
    return out


def _check_unique(spec: TableSpec, table: pa.Table) -> None:
    keys = list(spec.join_keys) + ([spec.event_timestamp] if spec.event_timestamp else [])
    if table.num_rows < 2:
        return
    idx = pa.array(np.arange(table.num_rows, dtype=np.int64))
    g = table.select(keys).append_column("__row", idx).group_by(keys, use_threads=False).aggregate(
        [("__row", "count"), ("__row", "max")])
    dups = g.filter(pc.greater(g.column("__row_count"), 1))
    if dups.num_rows:
        # Among rows whose key repeats, the first one (in row order) whose key was already seen.
        rows = table.select(keys).append_column("__row", idx).join(dups.select(keys), keys, join_type="inner")
        rows = rows.sort_by("__row")
        seen: set[tuple] = set()
        for rec in rows.to_pylist():
            k = tuple(rec[c] for c in keys)
            if k in seen:
                first = rec["__row"]
                break
            seen.add(k)
        raise _err(spec, ",".join(keys), f"row {first} duplicates an earlier row with the same key "
                                         f"({_key_repr(table, keys, first)})")
