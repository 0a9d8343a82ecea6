"""Open a feature store from where it lives: a local directory (symlink layout, feature_store/store.py) or a
prefix on an object store (pointer layout, feature_store/object_store.py). Every caller opens stores through
`open_store` (the run's store: `open_run_store(cfg)`).

    open_store("var/feature_store")                                   # local directory (also file:///abs/path)
    open_store("s3://bucket/features", s3={"endpoint_override": "http://127.0.0.1:9000", "region": "us-east-1"})
    open_store("s3://bucket/features?endpoint_override=127.0.0.1:9000&scheme=http")   # options in the URI
    open_store("gs://bucket/features")                                # pyarrow's GcsFileSystem
    open_store("memory://features")                                   # any other fsspec protocol
    open_store("bucket/features", filesystem=any_pyarrow_filesystem)  # e.g. PyFileSystem(FSSpecHandler(fs))

No credentials here, ever: S3 takes the AWS default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN, AWS_PROFILE, instance roles), GCS its default credentials; a URI with `user:secret@` is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from feature_store.object_fs import S3_OPTIONS, ObjectFS
from feature_store.store import FeatureStore

if TYPE_CHECKING:
    from configs import RunConfig

_BOOL_OPTIONS = ("force_virtual_addressing",)
_NUMBER_OPTIONS = ("connect_timeout", "request_timeout", "max_attempts")


def is_object_uri(root: str | Path) -> bool:
    """True for `scheme://...` roots other than file://."""
    if isinstance(root, Path):
        return False
    scheme = urlsplit(str(root)).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive, not a scheme


def _query_options(query: str, uri: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in S3_OPTIONS:
            raise ValueError(f"{uri}: unknown option {key!r} in the URI (have {list(S3_OPTIONS)})")
        if key in _BOOL_OPTIONS:
            out[key] = value.lower() in ("1", "true", "yes")
        elif key in _NUMBER_OPTIONS:
            out[key] = float(value) if key != "max_attempts" else int(value)
        else:
            out[key] = value
    return out


def open_store(root: str | Path, *, s3: Mapping[str, Any] | None = None,
               filesystem: pafs.FileSystem | None = None, **store_kwargs) -> FeatureStore:
    """The feature store at `root`; see the module docstring for the forms. `s3`: S3 options (endpoint_override,
    region, scheme, force_virtual_addressing, connect_timeout, request_timeout, max_attempts; unknown keys are an
    error), used for s3:// roots only."""
    from feature_store.object_store import ObjectFeatureStore

    if filesystem is not None:
        if isinstance(filesystem, pafs.LocalFileSystem):
            return FeatureStore(root, **store_kwargs)
        path = str(root).strip("/")
        name = type(filesystem).__name__
        return ObjectFeatureStore(ObjectFS.wrap(filesystem), path, f"{name}:{path}", **store_kwargs)
    if not is_object_uri(root):
        text = str(root)
        return FeatureStore(urlsplit(text).path if text.startswith("file://") else root, **store_kwargs)
    uri = str(root)
    parts = urlsplit(uri)
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValueError(f"feature store URI {parts.scheme}://{parts.hostname}{parts.path}: credentials do not go "
                         "in the URI; use the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...)")
    if not parts.netloc:
        raise ValueError(f"feature store URI {uri!r} has no bucket (expected {parts.scheme}://bucket/prefix)")
    path = f"{parts.netloc}{parts.path}".rstrip("/")
    clean = f"{parts.scheme}://{path}"
    if parts.scheme in ("s3", "s3a"):
        options = dict(s3 or {})
        for key, value in _query_options(parts.query, clean).items():
            if key in options and options[key] not in (None, value):
                raise ValueError(f"{clean}: option {key!r} is {value!r} in the URI but {options[key]!r} in the "
                                 "s3 settings")
            options[key] = value
        ofs = ObjectFS.s3(options)
        return ObjectFeatureStore(ofs, path, f"s3://{path}", **store_kwargs)
    if parts.query:
        raise ValueError(f"{uri}: URI options are only understood for s3:// roots")
    if parts.scheme in ("gs", "gcs"):
        fs, fs_path = pafs.FileSystem.from_uri(clean)
        return ObjectFeatureStore(ObjectFS.wrap(fs), fs_path, clean, **store_kwargs)
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        inner = fsspec.filesystem(parts.scheme)
    except (ImportError, ValueError) as e:
        raise ValueError(f"feature store URI {clean!r}: no filesystem for {parts.scheme}:// ({e})") from None
    return ObjectFeatureStore(ObjectFS.wrap(PyFileSystem(FSSpecHandler(inner))), path, clean, **store_kwargs)


def open_run_store(cfg: "RunConfig") -> FeatureStore:
    """THE way to open a run's feature store (every stage, retrain, the CLIs): feature_store.uri + s3 options."""
    return open_store(cfg.feature_store_uri, s3=cfg.feature_store.s3.model_dump(exclude_none=True))
