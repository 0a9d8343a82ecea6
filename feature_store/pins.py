"""Exact table versions handed to a stage: the check every stage runs on what it is given, and the
`TABLE=VERSION` pairs people pass on a command line. Only a CLI resolves `latest`; stages never do.

    versions = require_versions(["items", "users"], given, who="stage prompts")
    pins = parse_pins(["items=3f2a9c0d1e4b"], flag="--input")
"""
from __future__ import annotations

from typing import Mapping, Sequence


def require_versions(tables: Sequence[str], versions: Mapping[str, str] | None, who: str) -> dict[str, str]:
    """The exact version of each table in `tables`; a missing one or `latest` is a ValueError naming it."""
    versions = dict(versions or {})
    missing = [t for t in tables if not versions.get(t)]
    if missing:
        raise ValueError(f"{who}: no version given for table(s) {missing} (given: {sorted(versions)}); pass the "
                         "versions the upstream stage returned (only a CLI resolves 'latest')")
    latest = [t for t in tables if versions[t] == "latest"]
    if latest:
        raise ValueError(f"{who}: table(s) {latest}: 'latest' is not an exact version; resolve it first")
    return {t: versions[t] for t in tables}


def parse_pins(pairs: Sequence[str], flag: str) -> dict[str, str]:
    """`TABLE=VERSION` command-line pairs -> {table: version}; a malformed pair exits naming the flag."""
    out = {}
    for pair in pairs:
        table, sep, version = pair.partition("=")
        if not sep or not table or not version:
            raise SystemExit(f"{flag} expects TABLE=VERSION, got {pair!r}")
        out[table] = version
    return out
