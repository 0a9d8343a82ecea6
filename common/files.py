"""Durable file writes and content digests: the one implementation of each that every package uses.

- `atomic_path` / `atomic_write_*`: write a temp file beside the target, fsync it, rename it over the target,
  fsync the directory. A reader, or a run killed at any instant, sees the old file or the new one, never a part,
  and the new one survives a power cut once the call returns.
- `canonical_json` / `digest` / `json_digest` / `file_sha256` / `fs_sha256`: the byte strings and hashes that
  version ids, cache keys and fingerprints are made of (sorted keys, no whitespace, no NaN).

    from common.files import atomic_write_json, json_digest
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory (a rename is durable only once its directory is)."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `target` for the caller (or a library) to write; on success it is fsynced and
    renamed over `target` and the directory fsynced; on error it is removed and `target` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(target.parent)


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | Path, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | Path, obj: Any, *, sort_keys: bool = False) -> Path:
    """Indented JSON. Key order is kept unless asked: feature maps list columns in the order a model reads them."""
    return atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=sort_keys, default=json_default,
                                                allow_nan=False) + "\n")


def json_default(o: Any) -> Any:
    """JSON for the values our manifests hold: paths, datetimes, numpy scalars/arrays, sets."""
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    if isinstance(o, dt.timedelta):
        return o.total_seconds()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"value of type {type(o).__name__} is not JSON-serialisable: {o!r:.80}")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the byte string a version id or cache key is hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=json_default)


def digest(data: bytes | str, length: int = 16) -> str:
    """The first `length` hex digits of sha256(data)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:length]


def json_digest(obj: Any, length: int = 16) -> str:
    """digest(canonical_json(obj)): equal for equal values whatever the key order."""
    return digest(canonical_json(obj), length)


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fs_sha256(fs, path: str) -> str:
    """sha256 of a file on a pyarrow filesystem (local, S3, GCS, fsspec), streamed in 4 MiB reads."""
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
