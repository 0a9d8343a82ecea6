"""Command line for a feature store: a directory, or a prefix on an object store (s3://, gs://, any fsspec URL).

    python -m feature_store --root DIR ls
    python -m feature_store --root s3://bucket/prefix [--s3-endpoint http://127.0.0.1:9000] [--s3-region R] ls
    python -m feature_store --root DIR inspect TABLE[@VERSION]
    python -m feature_store --root DIR validate [TABLE[@VERSION]]
    python -m feature_store --root DIR diff TABLE V1 V2
    python -m feature_store --root DIR export TABLE[@VERSION] OUT.csv|OUT.parquet [--id-map TABLE@VERSION ...]
    python -m feature_store --root DIR gc --keep K [--pins FILE_OR_DIR] [--grace-seconds S] [--dry-run]

S3 credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...), the
endpoint and region from the flags, else AWS_ENDPOINT_URL / AWS_REGION. Exit codes: 0 ok, 1 validation found
problems, 2 bad input (one-line message on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from feature_store.locations import is_object_uri, open_store
from feature_store.maintenance import diff, export, gc, pinned_versions, validate
from feature_store.store import NotFound


class BadInput(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise BadInput(f"{self.prog}: {message}")


def _split_ref(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, version or "latest"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m feature_store", description="Inspect and maintain a feature store directory.")
    p.add_argument("--root", required=True, help="feature store root: a directory or s3://bucket/prefix, gs://...")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (else AWS_ENDPOINT_URL)")
    p.add_argument("--s3-region", help="S3 region (else AWS_REGION / AWS_DEFAULT_REGION)")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser("ls", help="tables with their latest version")
    s = sub.add_parser("inspect", help="print a version's manifest")
    s.add_argument("ref", metavar="TABLE[@VERSION]")
    s = sub.add_parser("validate", help="re-check checksums, row counts and schema")
    s.add_argument("ref", metavar="TABLE[@VERSION]", nargs="?")
    s = sub.add_parser("diff", help="compare two versions of a table")
    s.add_argument("table")
    s.add_argument("v1")
    s.add_argument("v2")
    s = sub.add_parser("export", help="write a table version as CSV/Parquet with the source's original ids")
    s.add_argument("ref", metavar="TABLE[@VERSION]")
    s.add_argument("out", metavar="OUT.csv|OUT.parquet")
    s.add_argument("--id-map", action="append", default=[], metavar="ENTITY_id_map@VERSION",
                   help="the id map to translate keys with (default: the latest user_id_map / item_id_map)")
    s = sub.add_parser("gc", help="delete all but the newest K versions (plus pinned and latest)")
    s.add_argument("--keep", type=int, required=True)
    s.add_argument("--pins", help="a model manifest.json or a directory searched for manifest.json files")
    s.add_argument("--grace-seconds", type=float, default=3600.0,
                   help="leave leftovers younger than this (a publish may still be running)")
    s.add_argument("--dry-run", action="store_true")
    return p


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if is_object_uri(args.root):
        store = open_store(args.root, s3={"endpoint_override": args.s3_endpoint, "region": args.s3_region})
        bucket = store.root.split("/", 1)[0]
        try:
            found = store.ofs.is_dir(bucket)
        except OSError as e:
            raise BadInput(f"--root {args.root!r}: cannot reach the store ({str(e).splitlines()[0]})") from None
        if not found:
            raise BadInput(f"--root {args.root!r}: bucket {bucket!r} not found")
    else:
        root = Path(args.root)
        if not root.is_dir():
            raise BadInput(f"--root {str(root)!r} is not a directory")
        store = open_store(root)
    if args.cmd == "ls":
        print(f"{'table':32} {'latest':12} {'rows':>10} {'versions':>8}  created_at")
        for name in store.tables():
            vs = store.versions(name)
            latest = next((v for v in vs if v["latest"]), None)
            if latest:
                print(f"{name:32} {latest['version']:12} {latest['rows']:>10} {len(vs):>8}  {latest['created_at']}")
    elif args.cmd == "inspect":
        name, version = _split_ref(args.ref)
        m = store.manifest(name, version)
        m.pop("arrow_schema_ipc_hex", None)
        print(json.dumps(m, indent=2, sort_keys=True))
    elif args.cmd == "validate":
        name, _, version = (args.ref or "").partition("@")
        results = validate(store, name or None, version or None)
        for r in results:
            status = "OK  " if r["ok"] else "FAIL"
            print(f"{status} {r['table']}@{r['version']}" + ("" if r["ok"] else ": " + "; ".join(r["problems"])))
        return 0 if all(r["ok"] for r in results) else 1
    elif args.cmd == "diff":
        print(json.dumps(diff(store, args.table, args.v1, args.v2), indent=2, sort_keys=True, default=str))
    elif args.cmd == "export":
        name, version = _split_ref(args.ref)
        maps = dict(_split_ref(r) for r in args.id_map)
        rows = export(store, name, version, Path(args.out), maps)
        print(f"wrote {rows} rows of {name}@{store.resolve(name, version)} to {args.out}")
    elif args.cmd == "gc":
        pins = pinned_versions(args.pins) if args.pins else {}
        removed = gc(store, args.keep, pins, grace_seconds=args.grace_seconds, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for r in removed:
            print(f"{verb} {r['path']} ({r['reason']})")
        print(f"{verb} {len(removed)} path(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except (BadInput, NotFound, ValueError) as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
