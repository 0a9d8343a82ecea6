"""In-memory online lookup of pinned feature-table versions (the serving path: no SQL, no Parquet per request).

`OnlineTable` holds one table version as contiguous numpy arrays (vectors: one (n, d) float32 matrix) plus a key
index: a sorted int64 key array searched with np.searchsorted for a single integer join key, a dict otherwise.
Tables with an event timestamp keep the latest row per key. Unknown keys get the feature default (vectors:
zeros) and are counted in `unknown_count`. `OnlineStore.reload(pins)` builds the new tables first and then swaps
one reference, so concurrent `table(name)` callers see either the old or the new set, never a mix.

    from feature_store import FeatureStore, OnlineStore
    online = OnlineStore(FeatureStore("var/feature_store"), {"item_emb": "latest"})
    vecs = online.table("item_emb").get_vectors("emb", [1, 2, 3])
"""
from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_store.store import FeatureStore, vector_matrix
from feature_store.table_spec import Feature, TableSpec

MISSING = "__missing"


def _latest_per_key(table: pa.Table, spec: TableSpec) -> pa.Table:
    """Rows sorted by join keys, one per key (the one with the greatest event timestamp)."""
    sort_keys = [(k, "ascending") for k in spec.join_keys]
    if spec.event_timestamp:
        sort_keys.append((spec.event_timestamp, "ascending"))
    table = table.take(pc.sort_indices(table, sort_keys=sort_keys))
    n = table.num_rows
    if n < 2 or not spec.event_timestamp:
        return table  # static tables have unique keys (enforced on publish)
    # Last row of each run of equal keys.
    last = np.ones(n, dtype=bool)
    same = np.ones(n - 1, dtype=bool)
    for k in spec.join_keys:
        col = table.column(k)
        same &= np.asarray(pc.equal(col.slice(0, n - 1), col.slice(1)).to_numpy(zero_copy_only=False), dtype=bool)
    last[:-1] = ~same
    return table.filter(pa.array(last))


def _missing_fill(f: Feature, arr: np.ndarray) -> Any:
    if f.default is not None:
        return np.asarray(f.default, dtype=object) if f.dtype == "list_string" else f.default
    if arr.dtype.kind == "f":
        return np.nan
    if arr.dtype.kind == "M":
        return np.datetime64("NaT")
    if arr.dtype.kind in "iub":
        return 0
    return None


class OnlineTable:
    """One table version in memory; build it with `OnlineTable.load(store, name, version)`."""

    def __init__(self, name: str, version: str, spec: TableSpec, table: pa.Table):
        self.name, self.version, self.spec = name, version, spec
        self.unknown_count = 0
        self._count_lock = threading.Lock()
        self.num_rows = table.num_rows
        self._vectors: dict[str, np.ndarray] = {}
        self._scalars: dict[str, np.ndarray] = {}
        for f in spec.features:
            col = table.column(f.name)
            if f.dtype == "vector":
                self._vectors[f.name] = np.ascontiguousarray(vector_matrix(col), dtype=np.float32)
            else:
                self._scalars[f.name] = col.to_numpy(zero_copy_only=False)
        self._sorted_keys: np.ndarray | None = None
        self._key_index: dict[Any, int] | None = None
        if len(spec.join_keys) == 1 and pa.types.is_integer(spec.key_type(spec.join_keys[0])):
            self._sorted_keys = np.ascontiguousarray(table.column(spec.join_keys[0]).to_numpy())
        elif len(spec.join_keys) == 1:
            self._key_index = {k: i for i, k in enumerate(table.column(spec.join_keys[0]).to_pylist())}
        else:
            cols = [table.column(k).to_pylist() for k in spec.join_keys]
            self._key_index = {k: i for i, k in enumerate(zip(*cols))}

    @classmethod
    def load(cls, store: FeatureStore, name: str, version: str = "latest") -> "OnlineTable":
        table, manifest = store._read_with_manifest(name, version)
        spec = TableSpec.from_dict(manifest["spec"])
        return cls(name, manifest["version"], spec, _latest_per_key(table, spec))

    @property
    def features(self) -> list[str]:
        return [f.name for f in self.spec.features]

    def lookup(self, keys: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index, missing mask) for a batch of keys; composite keys: a list of tuples or an (n, k) array."""
        if self._sorted_keys is not None:
            k = np.asarray(keys)
            if k.ndim != 1 or (k.size and k.dtype.kind not in "iu"):
                raise ValueError(f"table {self.name!r}: keys must be a 1-d batch of integers, got {k.dtype} {k.shape}")
            k = k.astype(np.int64, copy=False)
            sk = self._sorted_keys
            pos = np.searchsorted(sk, k)
            if sk.size == 0:
                return np.zeros(k.size, dtype=np.int64), np.ones(k.size, dtype=bool)
            np.minimum(pos, sk.size - 1, out=pos)
            missing = sk[pos] != k
        else:
            ki = self._key_index
            if len(self.spec.join_keys) > 1:
                keys = [tuple(r.tolist()) if isinstance(r, np.ndarray) else tuple(r) for r in keys]
            pos = np.fromiter((ki.get(x, -1) for x in keys), dtype=np.int64, count=len(keys))
            missing = pos < 0
            pos[missing] = 0
        n_missing = int(missing.sum())
        if n_missing:
            with self._count_lock:
                self.unknown_count += n_missing
        return pos, missing

    def vectors_at(self, feature: str, pos: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """Vectors of rows `pos` from `lookup` (its `missing` keys get the default)."""
        f = self.spec.feature(feature)
        if f.dtype != "vector":
            raise ValueError(f"table {self.name!r}: feature {feature!r} is {f.dtype}, not a vector")
        mat = self._vectors[feature]
        out = mat[pos] if mat.shape[0] else np.zeros((len(pos), f.dim), dtype=np.float32)
        if missing.any():
            out[missing] = f.default_vector()
        return out

    def get_vectors(self, feature: str, keys: Sequence | np.ndarray) -> np.ndarray:
        """(n, d) float32 vectors for `keys`; unknown keys get the default (zeros) and are counted."""
        pos, missing = self.lookup(keys)
        return self.vectors_at(feature, pos, missing)

    def get(self, keys: Sequence | np.ndarray, with_missing: bool = False) -> dict[str, np.ndarray]:
        """All features for a batch of keys (+ a boolean '__missing' array when with_missing=True)."""
        pos, missing = self.lookup(keys)
        out: dict[str, np.ndarray] = {}
        for f in self.spec.features:
            if f.dtype == "vector":
                out[f.name] = self.vectors_at(f.name, pos, missing)
                continue
            arr = self._scalars[f.name]
            vals = arr[pos] if arr.shape[0] else np.empty(len(pos), dtype=arr.dtype if arr.dtype.kind != "O" else object)
            if missing.any():
                fill = _missing_fill(f, arr)
                if isinstance(fill, np.ndarray):
                    for i in np.flatnonzero(missing):
                        vals[i] = fill
                else:
                    vals[missing] = fill
            out[f.name] = vals
        if with_missing:
            out[MISSING] = missing
        return out


class OnlineStore:
    """Several pinned table versions; `reload` swaps the whole set atomically."""

    def __init__(self, store: FeatureStore, pins: Mapping[str, str]):
        self.store = store
        self._tables: dict[str, OnlineTable] = {}
        self.reload(pins)

    def reload(self, pins: Mapping[str, str]) -> None:
        current = self._tables
        new: dict[str, OnlineTable] = {}
        for name, version in pins.items():
            v = self.store.resolve(name, version)
            old = current.get(name)
            new[name] = old if old is not None and old.version == v else OnlineTable.load(self.store, name, v)
        self._tables = new  # one reference assignment: readers see the old or the new set

    @property
    def pins(self) -> dict[str, str]:
        return {n: t.version for n, t in self._tables.items()}

    def table(self, name: str) -> OnlineTable:
        tables = self._tables
        try:
            return tables[name]
        except KeyError:
            raise KeyError(f"online store has no table {name!r} (pinned: {sorted(tables)})") from None
