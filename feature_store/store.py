"""Versioned, atomically published Parquet feature tables on a local file system.

Layout (hive-style, readable as-is by DuckDB / Spark / pandas through `root/<table>/*/*.parquet`):

    root/<table>/version=<id>      -> symlink to _data/<uuid>   (replaced atomically on re-publish)
    root/<table>/_data/<uuid>/part-0.parquet, _manifest.json    (immutable once renamed into place)
    root/<table>/_latest           text file holding the latest version id (temp file + os.replace)
    root/<table>/_data/.tmp-*      in-progress writes: ignored by readers, removed by gc

A version id is the first 12 hex digits of sha256(canonical JSON of the recipe): same recipe -> same version.
A reader resolves the version symlink once and reads manifest and data from that immutable directory, so a
concurrent re-publish or a kill -9 at any point shows the old or the new version, never a mix or a partial file.
Two concurrent publishers of one version: the first to swap its link in (under the table's flock) wins; the other
drops its own directory and returns the winner's version as reused, so a version id always names the same bytes.

Object stores (S3, GCS, any fsspec filesystem) use the same API with a pointer-object layout instead of symlinks:
feature_store/object_store.py; `feature_store.locations.open_store` picks the layout from the root.

    python -m feature_store --root var/feature_store ls
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.files import atomic_write_text, canonical_json, file_sha256, fsync_path, json_default, json_digest
from feature_store.table_spec import TableSpec, conform

DATA_FILE = "part-0.parquet"
MANIFEST_FILE = "_manifest.json"
LATEST_FILE = "_latest"
DATA_DIR = "_data"
FORMAT_VERSION = 1
_VERSION_RE = re.compile(r"^[0-9a-f]{12}$")
_READ_RETRIES = 20
_READ_BATCH_ROWS = 16384


class NotFound(KeyError, ValueError):
    """Unknown table or version (message names both)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class TableRef:
    name: str
    version: str
    path: Path | str  # the visible version: root/<table>/version=<id> (a directory link, or on object stores a URI)
    rows: int
    written: bool = True  # False when publish found this version already there and reused it


# ------------------------------------------------------------------------------------------------ helpers

def version_id(recipe: Mapping) -> str:
    if not isinstance(recipe, Mapping) or not recipe:
        raise ValueError("recipe must be a non-empty mapping (source checksums, model id, settings, code version)")
    return json_digest(dict(recipe), 12)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe` of the checkout holding this package, else 'unknown'."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def vector_matrix(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """fixed_size_list<float, d> column -> (n, d) float32 array (zero-copy for one float32 chunk without nulls).

    Null rows become zeros. The result may be read-only when it shares Arrow's memory.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else (
            col.combine_chunks() if col.num_chunks else pa.array([], col.type))
    if not pa.types.is_fixed_size_list(col.type):
        raise TypeError(f"vector_matrix needs a fixed_size_list column, got {col.type}")
    d = col.type.list_size
    # .values ignores the slice offset (and keeps slots of null rows), so slice it by hand.
    values = col.values.slice(col.offset * d, len(col) * d)
    mat = values.to_numpy(zero_copy_only=False).reshape(len(col), d)
    if col.null_count:
        mat = mat.astype(np.float32, copy=True)
        mat[np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = 0.0
    return mat if mat.dtype == np.float32 else mat.astype(np.float32)


# ------------------------------------------------------------------------------------------------ the store

@dataclass
class VersionSnapshot:
    """One version opened for reading: its manifest and its Parquet file (see FeatureStore.open_version)."""
    name: str
    version: str
    manifest: dict
    file: pq.ParquetFile

    @property
    def spec(self) -> TableSpec:
        return TableSpec.from_dict(self.manifest["spec"])

    def iter_batches(self, columns: list[str] | None = None,
                     batch_size: int = 16384) -> Iterator[pa.RecordBatch]:
        if columns is not None:
            names = [c["name"] for c in self.manifest["arrow_schema"]]
            bad = [c for c in columns if c not in names]
            if bad:
                raise ValueError(f"table {self.name!r}@{self.version}: no column {bad[0]!r} (have {names})")
        return self.file.iter_batches(batch_size=batch_size, columns=columns)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        # Small batches: decoding nested (vector) columns a whole row group at a time peaked at ~3.5x the
        # table's size (measured 545 vs 325 MB RSS for a 140 MB table); the result is chunked.
        batches = list(self.iter_batches(columns, _READ_BATCH_ROWS))
        full = self.file.schema_arrow.remove_metadata()
        schema = full if columns is None else pa.schema([full.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema)


class FeatureStore:
    """A directory of versioned feature tables; see the module docstring for the layout."""

    is_object_store = False

    def __init__(self, root: str | Path, *, compression: str = "zstd", row_group_size: int = 131072):
        self.root = Path(root)
        self.compression = compression
        self.row_group_size = row_group_size

    @property
    def uri(self) -> str:
        """Where the store is, as messages and manifests name it."""
        return str(self.root)

    def location(self) -> dict:
        """What a model manifest records to find this store again (never credentials)."""
        return {"uri": str(self.root.absolute())}

    @functools.cached_property
    def fs(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    # -- paths
    def _table_dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith((".", "_")) or "@" in name:
            raise NotFound(f"bad table name {name!r}")
        return self.root / name

    def _link(self, name: str, version: str) -> Path:
        return self._table_dir(name) / f"version={version}"

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        # Serialises the swap of pointers between concurrent publishers of one table (readers never lock).
        path = self._table_dir(name) / ".lock"
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- write
    def reuse(self, name: str, version: str) -> TableRef | None:
        """`existing(name, version)`, made `latest` as a publish of it would; None if it is not published."""
        found = self.existing(name, version)
        if found is not None:
            with self._lock(name):
                atomic_write_text(self._table_dir(name) / LATEST_FILE, version + "\n")
        return found

    def existing(self, name: str, version: str) -> TableRef | None:
        """The published version `version` of `name`, or None: a stage whose recipe gives a version that is
        already here reuses it instead of recomputing (a version id always names the same bytes)."""
        link = self._link(name, version)
        try:
            manifest = json.loads((link / MANIFEST_FILE).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        return TableRef(name, version, link, int(manifest["rows"]), written=False)

    def publish(self, spec: TableSpec, data: Any, recipe: Mapping, config: Mapping | None = None,
                build_stats: Mapping | Callable[[], Mapping] | None = None) -> TableRef:
        """Validate `data` against `spec`, write it as version sha256(recipe)[:12] and make it `latest`.

        If that version is already published it is kept as it is (its bytes never change) and only made
        `latest`: the same recipe never writes a second, different file under one version id. `data` may be a
        zero-argument callable, called only when the version has to be written (so a reused table costs nothing).
        `build_stats` (a mapping, or a callable asked after `data`) says what building it did, e.g. rows dropped;
        it is kept in the manifest as `build_stats`, so a re-run that reuses the table can still report it."""
        version = version_id(recipe)
        found = self.reuse(spec.name, version)
        if found is not None:
            return found
        table = conform(spec, data() if callable(data) else data)
        return self._write_new(spec, table, version, recipe, config, build_stats)

    def _compression(self, spec: TableSpec, table: pa.Table) -> dict[str, str]:
        # Float vectors barely compress (measured 125 vs 140 MB for 64-d) but zstd triples read time.
        compression = {f.name: "none" if f.dtype == "vector" else self.compression for f in spec.features}
        compression.update({c: self.compression for c in table.column_names if c not in compression})
        return compression

    def _write_new(self, spec: TableSpec, table: pa.Table, version: str, recipe: Mapping, config: Mapping | None,
                   build_stats: Mapping | Callable[[], Mapping] | None) -> TableRef:
        tdir = self._table_dir(spec.name)
        data_root = tdir / DATA_DIR
        data_root.mkdir(parents=True, exist_ok=True)
        publish_id = uuid.uuid4().hex
        tmp = data_root / f".tmp-{publish_id}"
        tmp.mkdir()
        try:
            data_path = tmp / DATA_FILE
            pq.write_table(table, data_path, compression=self._compression(spec, table),
                           row_group_size=self.row_group_size)
            fsync_path(data_path)
            files = [{"path": DATA_FILE, "sha256": file_sha256(data_path), "bytes": data_path.stat().st_size,
                      "rows": table.num_rows}]
            manifest = self._manifest(spec, table, version, publish_id, recipe, config, files)
            if build_stats is not None:
                manifest["build_stats"] = dict(build_stats() if callable(build_stats) else build_stats)
            mpath = tmp / MANIFEST_FILE
            with open(mpath, "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True, default=json_default, allow_nan=False)
                f.flush()
                os.fsync(f.fileno())
            fsync_path(tmp)
            final = data_root / publish_id
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_path(data_root)
        winner = self._swap_in(spec.name, version, publish_id)
        if winner is not None:
            return winner
        return TableRef(spec.name, version, self._link(spec.name, version), table.num_rows)

    def _swap_in(self, name: str, version: str, publish_id: str) -> TableRef | None:
        """Link `version` to _data/<publish_id> and make it latest. If another publisher linked a readable copy
        of this version meanwhile, theirs stays (a version id names one set of bytes), ours is dropped and their
        TableRef returned; a broken copy (unreadable manifest) is replaced."""
        tdir = self._table_dir(name)
        link = self._link(name, version)
        # The temporary link lives in _data/ so that no glob over root/<table>/*/ ever sees it; rename moves
        # the link itself, so its relative target is resolved only at its final place.
        tmp_link = tdir / DATA_DIR / f".link-{publish_id}"
        os.symlink(f"{DATA_DIR}/{publish_id}", tmp_link)
        with self._lock(name):
            winner = self.existing(name, version)
            if winner is not None:
                os.unlink(tmp_link)
                atomic_write_text(tdir / LATEST_FILE, version + "\n")
            else:
                old = os.readlink(link) if link.is_symlink() else None
                os.replace(tmp_link, link)
                fsync_path(tdir)
                atomic_write_text(tdir / LATEST_FILE, version + "\n")
        if winner is not None:
            # Never linked, so no reader can have resolved it.
            shutil.rmtree(tdir / DATA_DIR / publish_id, ignore_errors=True)
            return winner
        if old and Path(old).name != publish_id:
            # Readers that already resolved the old (broken) directory retry on FileNotFoundError.
            shutil.rmtree(tdir / old, ignore_errors=True)
        return None

    def _manifest(self, spec: TableSpec, table: pa.Table, version: str, publish_id: str, recipe: Mapping,
                  config: Mapping | None, files: list[dict]) -> dict:
        ev: dict[str, Any] = {"min": None, "max": None}
        if spec.event_timestamp and table.num_rows:
            mm = pc.min_max(table.column(spec.event_timestamp))
            ev = {"min": mm["min"].as_py().isoformat(), "max": mm["max"].as_py().isoformat()}
        schema = spec.arrow_schema()
        return {
            "format_version": FORMAT_VERSION,
            "table": spec.name,
            "version": version,
            "publish_id": publish_id,
            "created_at": _utc_now(),
            "code_version": code_version(),
            "rows": table.num_rows,
            "spec": spec.to_dict(),
            "arrow_schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
            "arrow_schema_ipc_hex": schema.serialize().to_pybytes().hex(),
            "files": files,
            "event_time": ev,
            "recipe": json.loads(canonical_json(dict(recipe))),
            "config": None if config is None else json.loads(canonical_json(dict(config))),
        }

    # -- read
    def tables(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith((".", "_")) and (p / LATEST_FILE).exists())

    def _version_links(self, name: str) -> list[str]:
        tdir = self._table_dir(name)
        if not tdir.is_dir():
            raise NotFound(f"unknown table {name!r} under {self.uri} (have {self.tables()})")
        return sorted(p.name.split("=", 1)[1] for p in tdir.iterdir()
                      if p.name.startswith("version=") and p.is_symlink())

    def _read_latest(self, name: str) -> str:
        return (self._table_dir(name) / LATEST_FILE).read_text().strip()

    def _has_version(self, name: str, version: str) -> bool:
        return self._link(name, version).is_symlink()

    def resolve(self, name: str, version: str = "latest") -> str:
        """'latest', a full version id or a unique prefix of one -> the full version id."""
        self._table_dir(name)
        if version == "latest":
            try:
                v = self._read_latest(name)
            except FileNotFoundError:
                raise NotFound(f"unknown table {name!r} under {self.uri} (have {self.tables()})") from None
            if not self._has_version(name, v):
                raise NotFound(f"table {name!r}: latest points to version {v!r}, which no longer exists")
            return v
        if _VERSION_RE.match(version) and self._has_version(name, version):
            return version
        have = self._version_links(name)
        hits = [v for v in have if v.startswith(version)] if version else []
        if len(hits) != 1:
            what = "is ambiguous" if hits else "not found"
            raise NotFound(f"table {name!r}: version {version!r} {what} (have {have})")
        return hits[0]

    def _snapshot(self, name: str, version: str) -> tuple[str, Path]:
        """Resolve once to the immutable data directory behind the version link."""
        v = self.resolve(name, version)
        link = self._link(name, v)
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            raise NotFound(f"table {name!r}: version {v!r} disappeared while resolving") from None
        return v, self._table_dir(name) / target

    def _retrying(self, name: str, version: str, fn):
        for attempt in range(_READ_RETRIES):
            v, d = self._snapshot(name, version)
            try:
                return fn(v, d)
            except FileNotFoundError:
                # The directory was swapped out by a concurrent re-publish or gc: resolve again.
                if attempt == _READ_RETRIES - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))

    # -- the files of one resolved data directory (object stores override these and _snapshot)
    def _load_manifest(self, d: Path) -> dict:
        with open(d / MANIFEST_FILE) as f:
            return json.load(f)

    def _open_data(self, d: Path) -> pq.ParquetFile:
        return pq.ParquetFile(pa.OSFile(str(d / DATA_FILE)), pre_buffer=False)

    def data_path(self, d: Path, rel: str) -> str:
        """A file of a resolved data directory as a path in `self.fs` (what `validate` re-checks)."""
        return str(d / rel)

    def manifest(self, name: str, version: str = "latest") -> dict:
        def load(v: str, d) -> dict:
            m = self._load_manifest(d)
            m["path"] = str(self._link(name, v))
            return m
        return self._retrying(name, version, load)

    def read(self, name: str, version: str = "latest", columns: list[str] | None = None) -> pa.Table:
        return self._read_with_manifest(name, version, columns)[0]

    def open_version(self, name: str, version: str = "latest") -> "VersionSnapshot":
        """Manifest + open Parquet file of one version, both from the same immutable directory.

        The file handle stays valid even if a concurrent re-publish or gc removes the directory afterwards.
        """
        def load(v: str, d) -> VersionSnapshot:
            manifest = self._load_manifest(d)
            file = self._open_data(d)
            manifest["path"] = str(self._link(name, v))
            return VersionSnapshot(name, v, manifest, file)
        return self._retrying(name, version, load)

    def _read_with_manifest(self, name: str, version: str = "latest",
                            columns: list[str] | None = None) -> tuple[pa.Table, dict]:
        snap = self.open_version(name, version)
        return snap.read(columns), snap.manifest

    def read_pandas(self, name: str, version: str = "latest", columns: list[str] | None = None):
        """As `read`, converted to pandas (vector columns become object columns of numpy arrays)."""
        return self.read(name, version, columns).to_pandas()

    def spec(self, name: str, version: str = "latest") -> TableSpec:
        return TableSpec.from_dict(self.manifest(name, version)["spec"])

    def versions(self, name: str) -> list[dict]:
        """One summary per version, newest first: version, created_at, rows, latest, path, recipe."""
        latest = None
        with contextlib.suppress(NotFound):
            latest = self.resolve(name, "latest")
        out = []
        for v in self._version_links(name):
            with contextlib.suppress(NotFound, FileNotFoundError):
                m = self.manifest(name, v)
                out.append({"version": v, "created_at": m["created_at"], "rows": m["rows"], "latest": v == latest,
                            "path": m["path"], "event_time": m["event_time"], "recipe": m["recipe"]})
        return sorted(out, key=lambda r: r["created_at"], reverse=True)
