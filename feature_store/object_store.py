"""Versioned feature tables on an object store (S3, GCS, any fsspec filesystem): the FeatureStore API without
rename, symlinks or locks, with the same guarantees as the local layout.

Layout under the root prefix (paths inside the bucket; readable by anything that reads Parquet):

    <table>/_data/<publish_id>/part-0.parquet   immutable: uploaded first (a multipart upload shows nothing until
                                                it completes, so a killed upload leaves no object)
    <table>/_data/<publish_id>/_manifest.json   immutable: written after the data; a prefix without it is unfinished
    <table>/version=<id>                        pointer object {"version", "publish_id"}: created once, with a
                                                create-only PUT (S3 If-None-Match: *), never overwritten
    <table>/_latest                             pointer object: the latest version id (a whole-object PUT)
    <table>/_data/<publish_id>/_retired         written by gc when it removed a version's pointer

Publish: data, then manifest, then the version pointer, then `_latest`. A PUT is atomic (readers see the old
object or the new one, whole) and S3 reads are strongly consistent, so at any kill point a reader sees either no
new version or a complete one: killed during the data upload or before the pointer -> the new prefix is never
referenced (readers see the old version); killed after the pointer, before `_latest` -> the new version can be read
by its id while `latest` still names the old one (a re-run reuses it and moves `latest`).

How readers stay consistent: a reader resolves `_latest` (or a version id) to the version pointer ONCE, reads the
pointer's publish_id and then reads manifest and data only from that immutable prefix; a pointer is never
rewritten and a prefix never changes, so a read that started on a version finishes on the same bytes whatever is
published meanwhile. Nothing is deleted at publish time: a prefix a reader may have resolved is removed only by gc,
a grace period after its pointer was removed (the `_retired` marker's time).

Two concurrent publishers of one version: both upload their own prefix; the version pointer is created with a
create-only PUT, so exactly one wins; the other sees the pointer exists, deletes its own prefix (never referenced,
so no reader can have it) and returns the winner's version as reused (`written=False`). A version id therefore
always means the same bytes. On a filesystem without an atomic create (`ObjectFS.atomic_create` False: pyarrow's
GcsFileSystem, fsspec filesystems whose `pipe_file(mode="create")` checks then writes) the check and the write are
two calls: two publishers finishing within that gap both write the pointer, the later one wins, and a reader that
resolved the earlier one keeps reading its complete prefix until gc removes it a grace period later. A pointer
whose prefix has no readable manifest (a broken version) is replaced by the next publish of that version.

gc (feature_store/maintenance.py) on an object store: a version outside the keep set (newest K, latest, pinned)
gets a `_retired` marker in its prefix, then its pointer is deleted (it disappears for new readers at once); the
prefix itself is deleted once the marker is older than the grace period. A prefix no pointer references and
without a marker (a killed publish, a lost race) is deleted once its newest object is older than the grace period;
so is any incomplete multipart upload under the table (S3). A publish in progress is younger than the grace period
and is never touched.

    from feature_store.locations import open_store
    store = open_store("s3://bucket/features", s3={"endpoint_override": "http://127.0.0.1:9000"})
    ref = store.publish(spec, df, recipe={...})
"""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any, Callable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from common.files import canonical_json, json_default
from feature_store.object_fs import HashingWriter, ObjectFS
from feature_store.store import (
    DATA_DIR,
    DATA_FILE,
    FORMAT_VERSION,
    LATEST_FILE,
    MANIFEST_FILE,
    FeatureStore,
    NotFound,
    TableRef,
)
from feature_store.table_spec import TableSpec

RETIRED_FILE = "_retired"
POINTER_PREFIX = "version="


class ObjectFeatureStore(FeatureStore):
    """A prefix on a pyarrow filesystem holding versioned feature tables; see the module docstring."""

    is_object_store = True

    def __init__(self, ofs: ObjectFS, root: str, uri: str, *, compression: str = "zstd",
                 row_group_size: int = 131072):
        # self.root stays a str path inside the filesystem ("bucket/prefix"); self.uri is what people typed.
        self.ofs = ofs
        self.root = root.rstrip("/")  # type: ignore[assignment]
        self._uri = uri.rstrip("/")
        self.compression = compression
        self.row_group_size = row_group_size

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def fs(self):  # type: ignore[override]
        return self.ofs.fs

    def location(self) -> dict:
        return {"uri": self._uri, **({"s3": dict(self.ofs.options)} if self.ofs.options else {})}

    # -- paths
    def _table_dir(self, name: str) -> str:  # type: ignore[override]
        if not name or "/" in name or name.startswith((".", "_")) or "@" in name:
            raise NotFound(f"bad table name {name!r}")
        return f"{self.root}/{name}"

    def _link(self, name: str, version: str) -> str:  # type: ignore[override]
        return f"{self._uri}/{name}/{POINTER_PREFIX}{version}"

    def _pointer(self, name: str, version: str) -> str:
        return f"{self._table_dir(name)}/{POINTER_PREFIX}{version}"

    def _prefix(self, name: str, publish_id: str) -> str:
        return f"{self._table_dir(name)}/{DATA_DIR}/{publish_id}"

    def _read_pointer(self, name: str, version: str) -> str:
        """The publish_id a version pointer names (FileNotFoundError if there is no such pointer)."""
        raw = self.ofs.read_bytes(self._pointer(name, version))
        try:
            doc = json.loads(raw)
            pid = doc["publish_id"]
        except (ValueError, KeyError, TypeError):
            raise NotFound(f"table {name!r}: version pointer {version!r} is unreadable") from None
        if not isinstance(pid, str) or not pid or "/" in pid:
            raise NotFound(f"table {name!r}: version pointer {version!r} names no data prefix")
        return pid

    # -- write
    def reuse(self, name: str, version: str) -> TableRef | None:
        found = self.existing(name, version)
        if found is not None:
            self._set_latest(name, version)
        return found

    def existing(self, name: str, version: str) -> TableRef | None:
        try:
            pid = self._read_pointer(name, version)
            manifest = self._load_manifest(self._prefix(name, pid))
        except (FileNotFoundError, NotFound, ValueError):
            return None
        return TableRef(name, version, self._link(name, version), int(manifest["rows"]), written=False)

    def _write_new(self, spec: TableSpec, table: pa.Table, version: str, recipe: Mapping, config: Mapping | None,
                   build_stats: Mapping | Callable[[], Mapping] | None) -> TableRef:
        publish_id = uuid.uuid4().hex
        prefix = self._prefix(spec.name, publish_id)
        try:
            files = [self._upload_data(prefix, spec, table)]
            manifest = self._manifest(spec, table, version, publish_id, recipe, config, files)
            if build_stats is not None:
                manifest["build_stats"] = dict(build_stats() if callable(build_stats) else build_stats)
            self._upload_manifest(prefix, manifest)
        except BaseException:
            # Not referenced by any pointer: no reader can have it. (A kill leaves it to gc.)
            self.ofs.delete_prefix(prefix)
            raise
        # No clean-up if this fails: a PUT that timed out may still have created the pointer; gc decides later.
        created = self._create_pointer(spec.name, version, publish_id)
        if not created:
            winner = self.existing(spec.name, version)
            if winner is None:  # the pointer there is broken: a readable copy replaces it
                self.ofs.write_bytes(self._pointer(spec.name, version), self._pointer_bytes(version, publish_id))
            else:
                self.ofs.delete_prefix(prefix)
                self._set_latest(spec.name, version)
                return winner
        self._set_latest(spec.name, version)
        return TableRef(spec.name, version, self._link(spec.name, version), table.num_rows)

    # The publish steps, in order (each its own method so a crash test can stop a child between them).
    def _upload_data(self, prefix: str, spec: TableSpec, table: pa.Table) -> dict:
        # Closing the stream completes the (multipart) upload: only then does the object exist. After an error the
        # half-written object the close leaves is removed with the prefix by the caller.
        with self.ofs.open_output_stream(f"{prefix}/{DATA_FILE}") as out:
            sink = HashingWriter(out)
            pq.write_table(table, sink, compression=self._compression(spec, table),
                           row_group_size=self.row_group_size)
        return {"path": DATA_FILE, "sha256": sink.sha.hexdigest(), "bytes": sink.size, "rows": table.num_rows}

    def _upload_manifest(self, prefix: str, manifest: dict) -> None:
        body = json.dumps(manifest, indent=1, sort_keys=True, default=json_default, allow_nan=False)
        self.ofs.write_bytes(f"{prefix}/{MANIFEST_FILE}", body.encode("utf-8"))

    @staticmethod
    def _pointer_bytes(version: str, publish_id: str) -> bytes:
        return canonical_json({"format_version": FORMAT_VERSION, "version": version,
                               "publish_id": publish_id}).encode("utf-8")

    def _create_pointer(self, name: str, version: str, publish_id: str) -> bool:
        return self.ofs.create_only(self._pointer(name, version), self._pointer_bytes(version, publish_id))

    def _set_latest(self, name: str, version: str) -> None:
        self.ofs.write_bytes(f"{self._table_dir(name)}/{LATEST_FILE}", (version + "\n").encode("utf-8"))

    # -- read
    def table_names(self) -> list[str]:
        """Every table prefix under the root, including one whose first publish never completed."""
        return sorted(i.base_name for i in self.ofs.list(self.root)
                      if i.type.name == "Directory" and not i.base_name.startswith((".", "_")))

    def tables(self) -> list[str]:
        return [n for n in self.table_names() if self.ofs.is_file(f"{self.root}/{n}/{LATEST_FILE}")]

    def _version_links(self, name: str) -> list[str]:
        tdir = self._table_dir(name)
        entries = self.ofs.list(tdir)
        if not entries:
            raise NotFound(f"unknown table {name!r} under {self.uri} (have {self.tables()})")
        return sorted(i.base_name[len(POINTER_PREFIX):] for i in entries
                      if i.type.name == "File" and i.base_name.startswith(POINTER_PREFIX))

    def _read_latest(self, name: str) -> str:
        return self.ofs.read_bytes(f"{self._table_dir(name)}/{LATEST_FILE}").decode("utf-8").strip()

    def _has_version(self, name: str, version: str) -> bool:
        return self.ofs.is_file(self._pointer(name, version))

    def _snapshot(self, name: str, version: str) -> tuple[str, str]:  # type: ignore[override]
        """Resolve once: version -> pointer -> the immutable prefix every later read of this call uses."""
        v = self.resolve(name, version)
        try:
            pid = self._read_pointer(name, v)
        except FileNotFoundError:
            raise NotFound(f"table {name!r}: version {v!r} disappeared while resolving") from None
        return v, self._prefix(name, pid)

    def _load_manifest(self, d: str) -> dict:  # type: ignore[override]
        return json.loads(self.ofs.read_bytes(f"{d}/{MANIFEST_FILE}"))

    def _open_data(self, d: str) -> pq.ParquetFile:  # type: ignore[override]
        # pre_buffer coalesces the column-chunk reads of a row group into few ranged GETs (the latency is per GET).
        return pq.ParquetFile(self.ofs.open_input_file(f"{d}/{DATA_FILE}"), pre_buffer=True)

    def data_path(self, d: str, rel: str) -> str:  # type: ignore[override]
        return f"{d}/{rel}"

    # -- upkeep (feature_store/maintenance.py)
    def pointers(self, name: str) -> dict[str, str | None]:
        """{version: publish_id} of every version pointer of `name` (None: an unreadable pointer)."""
        out: dict[str, str | None] = {}
        try:
            versions = self._version_links(name)
        except NotFound:
            return out
        for v in versions:
            try:
                out[v] = self._read_pointer(name, v)
            except (FileNotFoundError, NotFound):
                out[v] = None
        return out

    def retire(self, name: str, version: str, publish_id: str | None) -> None:
        """Take a version away from readers: mark its prefix (the grace period starts now), delete its pointer."""
        if publish_id is not None:
            stamp = dt.datetime.now(dt.timezone.utc).isoformat()
            self.ofs.write_bytes(f"{self._prefix(name, publish_id)}/{RETIRED_FILE}",
                                 canonical_json({"version": version, "retired_at": stamp}).encode("utf-8"))
        self.ofs.delete_file(self._pointer(name, version))

    def data_prefixes(self, name: str) -> dict[str, dict[str, Any]]:
        """{publish_id: {"age": seconds since its newest object, "retired_age": seconds since gc retired it or
        None}} for every prefix under <table>/_data/."""
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        data_root = f"{self._table_dir(name)}/{DATA_DIR}"
        base = data_root.lstrip("/")
        for info in self.ofs.list(data_root, recursive=True):
            rel = info.path.lstrip("/")[len(base) + 1:]
            pid, _, file = rel.partition("/")
            entry = out.setdefault(pid, {"age": float("inf"), "retired_age": None})
            if info.type.name != "File":
                continue
            age = self.ofs.age_seconds(info, now)
            entry["age"] = min(entry["age"], age)
            if file == RETIRED_FILE:
                entry["retired_age"] = age
        return out

    def delete_prefix(self, name: str, publish_id: str) -> None:
        self.ofs.delete_prefix(self._prefix(name, publish_id))
