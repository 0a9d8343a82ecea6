"""Store upkeep: validate versions against their manifests, diff two versions, garbage-collect old versions.

`gc` keeps the newest K versions of every table, its `latest`, and every version pinned by a model manifest
(any `manifest.json` under the pins path holding `"feature_tables": {name: version}`); an unreadable pins file
stops gc (fail closed). Leftovers of interrupted publishes (`_data/.tmp-*`, `_data/.link-*`, unreferenced data
dirs) are removed once older than `grace_seconds`, so a publish in progress is never collected.
On an object store (feature_store/object_store.py) an old version's pointer is removed at once and its data prefix
a grace period later (a reader may have resolved it just before); unreferenced prefixes and incomplete multipart
uploads go once older than the grace period.

    python -m feature_store --root var/feature_store validate
    python -m feature_store --root var/feature_store gc --keep 3 --pins var/models
    python -m feature_store --root s3://bucket/features gc --keep 3 --pins var/models
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.files import atomic_path, fs_sha256
from feature_store.store import DATA_DIR, FeatureStore, NotFound
from feature_store.table_spec import TableSpec

# ------------------------------------------------------------------------------------------------ validate

def validate_version(store: FeatureStore, name: str, version: str) -> list[str]:
    """Problems found in one version (empty list: checksums, row counts and schema all agree)."""
    problems: list[str] = []
    try:
        v, d = store._snapshot(name, version)
        manifest = store._load_manifest(d)
    except (OSError, ValueError, NotFound) as e:
        return [f"manifest unreadable: {e}"]
    try:
        spec = TableSpec.from_dict(manifest["spec"])
        want = spec.arrow_schema()
    except (KeyError, TypeError, ValueError) as e:
        return [f"manifest spec invalid: {e}"]
    if manifest.get("version") != v:
        problems.append(f"manifest says version {manifest.get('version')!r}, directory is {v!r}")
    if [(c["name"], c["type"]) for c in manifest.get("arrow_schema", [])] != [(f.name, str(f.type)) for f in want]:
        problems.append("manifest arrow_schema differs from its spec")
    total = 0
    fs = store.fs
    for entry in manifest.get("files", []):
        path = store.data_path(d, entry["path"])
        if fs.get_file_info(path).type != pafs.FileType.File:
            problems.append(f"{entry['path']}: missing")
            continue
        digest = fs_sha256(fs, path)
        if digest != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 {digest[:12]}… != manifest {entry['sha256'][:12]}…")
        try:
            pf = pq.ParquetFile(fs.open_input_file(path))
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{entry['path']}: not readable as Parquet: {e}")
            continue
        rows = pf.metadata.num_rows
        total += rows
        if rows != entry["rows"]:
            problems.append(f"{entry['path']}: {rows} rows, manifest says {entry['rows']}")
        got = pf.schema_arrow.remove_metadata()
        if not got.equals(want):
            bad = next((f.name for f in want if f.name not in got.names or got.field(f.name).type != f.type),
                       next((n for n in got.names if n not in want.names), "?"))
            problems.append(f"{entry['path']}: schema differs from spec at column {bad!r}")
    if total != manifest.get("rows"):
        problems.append(f"files hold {total} rows, manifest says {manifest.get('rows')}")
    return problems


def validate(store: FeatureStore, name: str | None = None, version: str | None = None) -> list[dict]:
    """[{table, version, ok, problems}] for one version, every version of a table, or the whole store."""
    names = [name] if name else store.tables()
    out = []
    for n in names:
        if version:
            versions = [store.resolve(n, version)]
        else:
            versions = store._version_links(n)
            try:
                store.resolve(n, "latest")
            except NotFound as e:
                out.append({"table": n, "version": "latest", "ok": False, "problems": [str(e)]})
        for v in versions:
            problems = validate_version(store, n, v)
            out.append({"table": n, "version": v, "ok": not problems, "problems": problems})
    return out


# ------------------------------------------------------------------------------------------------ diff

def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _dict_diff(a: Any, b: Any) -> dict[str, list]:
    fa, fb = _flatten(a or {}), _flatten(b or {})
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def diff(store: FeatureStore, name: str, v1: str, v2: str) -> dict:
    """What changed between two versions: schema, spec, recipe, config, rows, event time, key sets."""
    m1, m2 = store.manifest(name, v1), store.manifest(name, v2)
    s1 = {c["name"]: c["type"] for c in m1["arrow_schema"]}
    s2 = {c["name"]: c["type"] for c in m2["arrow_schema"]}
    keys = list(TableSpec.from_dict(m2["spec"]).join_keys)
    out: dict[str, Any] = {
        "table": name, "v1": m1["version"], "v2": m2["version"],
        "same_data": [f["sha256"] for f in m1["files"]] == [f["sha256"] for f in m2["files"]],
        "rows": [m1["rows"], m2["rows"]],
        "event_time": [m1["event_time"], m2["event_time"]],
        "columns_added": {c: s2[c] for c in s2 if c not in s1},
        "columns_removed": {c: s1[c] for c in s1 if c not in s2},
        "columns_retyped": {c: [s1[c], s2[c]] for c in s1 if c in s2 and s1[c] != s2[c]},
        "spec": _dict_diff(m1["spec"], m2["spec"]),
        "recipe": _dict_diff(m1["recipe"], m2["recipe"]),
        "config": _dict_diff(m1["config"], m2["config"]),
        "created_at": [m1["created_at"], m2["created_at"]],
    }
    if all(k in s1 for k in keys):
        a = store.read(name, m1["version"], columns=keys)
        b = store.read(name, m2["version"], columns=keys)
        con = duckdb.connect()
        try:
            con.register("a", a)
            con.register("b", b)
            kl = ", ".join(f'"{k}"' for k in keys)
            on = " AND ".join(f'x."{k}" = y."{k}"' for k in keys)
            q = (f"WITH x AS (SELECT DISTINCT {kl} FROM a), y AS (SELECT DISTINCT {kl} FROM b) "
                 f"SELECT count(*) FILTER (WHERE y.\"{keys[0]}\" IS NULL), "
                 f"count(*) FILTER (WHERE x.\"{keys[0]}\" IS NULL), "
                 f"count(*) FILTER (WHERE x.\"{keys[0]}\" IS NOT NULL AND y.\"{keys[0]}\" IS NOT NULL) "
                 f"FROM x FULL OUTER JOIN y ON {on}")
            only1, only2, both = con.execute(q).fetchall()[0]
        finally:
            con.close()
        out["keys"] = {"only_v1": only1, "only_v2": only2, "both": both}
    return out


# ------------------------------------------------------------------------------------------------ lineage

def _strings(d: Any) -> list[str]:
    if isinstance(d, str):
        return [d]
    if isinstance(d, Mapping):
        return [s for v in d.values() for s in _strings(v)]
    if isinstance(d, (list, tuple)):
        return [s for v in d for s in _strings(v)]
    return []


def lineage(store: FeatureStore, versions: Mapping[str, str]) -> dict[str, str]:
    """version -> table of every version the given ones were made from, themselves included: each recipe's pins
    (any string in it that is a version id of the store) followed back to the raw inputs. A pin to a version the
    store no longer holds ends the walk there."""
    listed = [(t, r) for t in store.tables() for r in store.versions(t)]  # each manifest read once
    owner = {r["version"]: t for t, r in listed}
    recipe = {r["version"]: r["recipe"] for _, r in listed}
    seen: dict[str, str] = {}
    todo = [v for v in versions.values() if v in owner]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen[v] = owner[v]
        todo += [s for s in _strings(recipe[v] or {}) if s in owner and s not in seen]
    return seen


# ------------------------------------------------------------------------------------------------ gc

def pinned_versions(path: str | Path) -> dict[str, set[str]]:
    """{table: {version, ...}} from a model manifest file or every manifest.json under a directory."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(p.rglob("manifest.json"))
    else:
        raise ValueError(f"pins path {str(p)!r} does not exist")
    pins: dict[str, set[str]] = {}
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"pins file {str(f)!r}: unreadable JSON ({e}); refusing to gc") from None
        tables = doc.get("feature_tables") if isinstance(doc, dict) else None
        if tables is None:
            continue
        if not isinstance(tables, dict):
            raise ValueError(f"pins file {str(f)!r}: feature_tables must map table name -> version")
        for name, version in tables.items():
            pins.setdefault(str(name), set()).add(str(version))
    return pins


def _age(path: Path, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _keep_set(store: FeatureStore, name: str, keep: int, pins: Mapping[str, set[str]]) -> tuple[list[str], set[str]]:
    """(readable versions newest first, the ones gc keeps: newest `keep`, latest, pinned)."""
    latest = None
    try:
        latest = store.resolve(name, "latest")
    except NotFound:
        pass
    pinned = set()
    for v in pins.get(name, ()):
        try:
            pinned.add(store.resolve(name, v))
        except NotFound:
            pass  # pinned version already gone: nothing to keep
    newest = [r["version"] for r in store.versions(name)]
    return newest, set(newest[:keep]) | pinned | ({latest} if latest else set())


def _gc_object(store, keep: int, pins: Mapping[str, set[str]], grace_seconds: float, dry_run: bool) -> list[dict]:
    """gc on an object store (see feature_store/object_store.py): retire old versions now, delete their data a grace
    period after, delete unreferenced prefixes and incomplete uploads older than the grace period."""
    removed: list[dict] = []
    for name in store.table_names():
        newest, keep_set = _keep_set(store, name, keep, pins)
        pointers = store.pointers(name)
        retired_now = set()
        for v in newest:
            if v not in keep_set:
                removed.append({"table": name, "path": store._link(name, v), "reason": "old version"})
                if not dry_run:
                    store.retire(name, v, pointers.get(v))
                retired_now.add(pointers.pop(v, None))
        referenced = {pid for pid in pointers.values() if pid}
        for pid, entry in sorted(store.data_prefixes(name).items()):
            if pid in referenced:
                continue
            if pid in retired_now or entry["retired_age"] is not None:
                # its marker was written when the pointer went: readers that resolved it before have a grace period
                age = 0.0 if pid in retired_now else entry["retired_age"]
                reason = "data of a retired version (grace period over)"
            else:
                age, reason = entry["age"], "leftover of an interrupted publish"
            if age < grace_seconds:
                continue
            removed.append({"table": name, "path": f"{store.uri}/{name}/{DATA_DIR}/{pid}", "reason": reason})
            if not dry_run:
                store.delete_prefix(name, pid)
        for key in store.ofs.abort_stale_uploads(f"{store._table_dir(name)}/", grace_seconds, dry_run):
            removed.append({"table": name, "path": f"{store.uri}{key[len(store.root):]}",
                            "reason": "incomplete multipart upload"})
    return removed


def gc(store: FeatureStore, keep: int, pins: Mapping[str, set[str]] | None = None, grace_seconds: float = 3600,
       dry_run: bool = False) -> list[dict]:
    """Remove old versions and leftovers; returns [{table, path, reason}] of what was (or would be) removed."""
    if keep < 1:
        raise ValueError(f"--keep must be >= 1, got {keep}")
    pins = pins or {}
    if store.is_object_store:
        return _gc_object(store, keep, pins, grace_seconds, dry_run)
    removed: list[dict] = []
    now = time.time()

    def rm(table: str, path: Path, reason: str) -> None:
        removed.append({"table": table, "path": str(path), "reason": reason})
        if dry_run:
            return
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)

    # Every table directory, including one whose first publish never completed (no _latest yet).
    names = sorted(p.name for p in store.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) \
        if store.root.is_dir() else []
    for name in names:
        tdir = store.root / name
        newest, keep_set = _keep_set(store, name, keep, pins)
        for v in newest:
            if v not in keep_set:
                link = tdir / f"version={v}"
                target = tdir / os.readlink(link)
                rm(name, link, "old version")  # unlink first: the version disappears atomically
                rm(name, target, f"data of old version {v}")
        referenced = set()
        for link in tdir.glob("version=*"):
            if link.is_symlink():
                referenced.add(Path(os.readlink(link)).name)
        data_root = tdir / DATA_DIR
        for entry in (sorted(data_root.iterdir()) if data_root.is_dir() else []):
            if entry.name in referenced or any(r["path"] == str(entry) for r in removed):
                continue
            if _age(entry, now) >= grace_seconds:
                rm(name, entry, "leftover of an interrupted publish")
        for entry in tdir.glob(".tmp-*"):
            if _age(entry, now) >= grace_seconds:
                rm(name, entry, "leftover temp file")
    return removed


def with_source_ids(store: FeatureStore, table: pa.Table, id_maps: Mapping[str, str] | None = None) -> pa.Table:
    """`table` with each `<entity>_id` key column replaced by the id the source files use, through the
    `<entity>_id_map` table (the version given in `id_maps`, else the latest; keys are stable, so a newer map
    translates older tables too). Key columns without an id map in the store are left as they are."""
    id_maps = dict(id_maps or {})
    have = set(store.tables())
    for col in table.column_names:
        map_name = col[: -len("_id")] + "_id_map" if col.endswith("_id") else None
        if map_name is None or (map_name not in have and map_name not in id_maps):
            continue
        ids = store.read(map_name, store.resolve(map_name, id_maps.get(map_name, "latest")),
                         columns=[col, "source_id"])
        pos = pc.index_in(table.column(col), value_set=ids.column(col))
        if pos.null_count:
            bad = table.column(col).filter(pc.is_null(pos))[0].as_py()
            raise ValueError(f"{col} {bad} has no entry in {map_name}: export with the id map of its dataset "
                             f"(--id-map {map_name}@VERSION)")
        table = table.set_column(table.column_names.index(col), col, ids.column("source_id").take(pos))
    return table


def export(store: FeatureStore, name: str, version: str, out: Path, id_maps: Mapping[str, str] | None = None) -> int:
    """Write `name@version` to `out` (.csv or .parquet, atomically) with original ids; returns the row count."""
    import pyarrow.csv as pacsv

    table = with_source_ids(store, store.read(name, store.resolve(name, version)), id_maps)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: export writes .csv or .parquet")
    with atomic_path(out) as tmp:
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        else:  # CSV has no list/vector cells: write those as JSON text
            for i, field in enumerate(table.schema):
                if pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type):
                    text = pa.array([None if v is None else json.dumps(v) for v in table.column(i).to_pylist()],
                                    pa.string())
                    table = table.set_column(i, field.name, text)
            pacsv.write_csv(table, tmp)
    return table.num_rows
