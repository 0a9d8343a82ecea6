"""The object-store side of the feature store in one module: pyarrow / fsspec / boto3 quirks wrapped behind
`ObjectFS`, the few operations the object layout (feature_store/object_store.py) needs.

- Data goes through pyarrow.fs (S3FileSystem, GcsFileSystem, or any fsspec filesystem through
  `pyarrow.fs.PyFileSystem(FSSpecHandler(fs))`): streaming multipart uploads, ranged reads for Parquet.
- A whole-object PUT is atomic on S3 and GCS: a reader sees the old object or the new one, never a part. A
  multipart upload becomes visible only when it completes, so a killed upload leaves no object (only invisible
  parts, which `abort_stale_uploads` removes on S3).
- `create_only(path, data)`: write an object only if no object has that name, atomically, which pyarrow.fs cannot
  do (no conditional PUT). S3: boto3 `put_object(IfNoneMatch="*")` with the same endpoint, region and
  credentials; fsspec: `pipe_file(path, data, mode="create")` (atomic where the implementation makes it so; the
  fsspec base class checks and then writes); any other pyarrow filesystem (e.g. GcsFileSystem): check, then
  write (`atomic_create` is then False and the store's docs say what that means).

Credentials are never passed here: S3 reads the AWS default chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_SESSION_TOKEN, AWS_PROFILE, instance roles), the endpoint `endpoint_override` or AWS_ENDPOINT_URL_S3 /
AWS_ENDPOINT_URL, the region `region` or AWS_REGION / AWS_DEFAULT_REGION.

    ofs = ObjectFS.s3({"endpoint_override": "http://127.0.0.1:9000", "region": "us-east-1"})
    ofs.create_only("bucket/prefix/t/version=abc", b"{...}")   # True: written; False: it already existed
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import os
import time
from typing import Any, Callable, Mapping

import pyarrow as pa
import pyarrow.fs as pafs

S3_OPTIONS = ("endpoint_override", "region", "scheme", "force_virtual_addressing", "connect_timeout",
              "request_timeout", "max_attempts")


def s3_settings(options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """S3 options (unknown keys are an error) completed from the environment; an endpoint given as a URL
    (`http://127.0.0.1:9000`) sets the scheme. Never holds credentials."""
    opts = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = sorted(set(opts) - set(S3_OPTIONS))
    if unknown:
        raise ValueError(f"s3 option {unknown[0]!r} is unknown (have {list(S3_OPTIONS)}); credentials come from "
                         "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE, never from options")
    endpoint = opts.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, sep, host = str(endpoint).partition("://")
        if sep:
            if opts.get("scheme") and opts["scheme"] != scheme:
                raise ValueError(f"s3.endpoint_override {endpoint!r} says {scheme}, s3.scheme says {opts['scheme']}")
            opts["scheme"], endpoint = scheme, host
        opts["endpoint_override"] = endpoint.rstrip("/")
    if opts.get("scheme") not in (None, "http", "https"):
        raise ValueError(f"s3.scheme must be http or https, got {opts['scheme']!r}")
    region = opts.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["region"] = region
    return opts


@functools.lru_cache(maxsize=16)
def _s3_filesystem(frozen: tuple) -> pafs.S3FileSystem:
    opts = dict(frozen)
    kwargs: dict[str, Any] = {k: opts[k] for k in ("endpoint_override", "region", "scheme",
                                                   "force_virtual_addressing", "connect_timeout",
                                                   "request_timeout") if k in opts}
    if "max_attempts" in opts:
        kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=int(opts["max_attempts"]))
    return pafs.S3FileSystem(**kwargs)


@functools.lru_cache(maxsize=16)
def _s3_client(frozen: tuple):
    import boto3
    from botocore.config import Config

    opts = dict(frozen)
    endpoint = opts.get("endpoint_override")
    url = f"{opts.get('scheme', 'https')}://{endpoint}" if endpoint else None
    addressing = "virtual" if opts.get("force_virtual_addressing") else ("path" if endpoint else "auto")
    config = Config(s3={"addressing_style": addressing},
                    retries={"mode": "standard", "max_attempts": int(opts.get("max_attempts", 3))},
                    connect_timeout=opts.get("connect_timeout", 60), read_timeout=opts.get("request_timeout", 60))
    keys = {k: opts[k] for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token") if k in opts}
    return boto3.session.Session().client("s3", endpoint_url=url, region_name=opts.get("region"), config=config,
                                          **keys)


def _split_bucket(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


class HashingWriter(io.RawIOBase):
    """A write-only file object that forwards to a pyarrow output stream and keeps a sha256 and a byte count,
    so a Parquet file is checksummed while it uploads (no second read of what was just written)."""

    def __init__(self, out: pa.NativeFile):
        super().__init__()
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        self.sha.update(view)
        self.out.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:  # the caller closes `out`: that is what completes the upload
        super().close()


class ObjectFS:
    """A pyarrow filesystem plus the create-only write it lacks; paths are `bucket/key` style, no scheme."""

    def __init__(self, fs: pafs.FileSystem, create_only: Callable[[str, bytes], bool] | None = None,
                 atomic_create: bool = False, s3_client: Callable[[], Any] | None = None, options: Mapping | None = None):
        self.fs = fs
        self._create_only = create_only
        self.atomic_create = atomic_create
        self._s3_client = s3_client
        self.options = dict(options or {})  # what a manifest may record (never credentials)

    # -- construction
    @classmethod
    def s3(cls, options: Mapping[str, Any] | None = None) -> "ObjectFS":
        opts = s3_settings(options)
        frozen = tuple(sorted(opts.items()))
        client = functools.partial(_s3_client, frozen)
        return cls(_s3_filesystem(frozen), _s3_create_only(client), atomic_create=True, s3_client=client,
                   options=opts)

    @classmethod
    def wrap(cls, fs: pafs.FileSystem) -> "ObjectFS":
        """Any pyarrow filesystem: an S3FileSystem gets conditional PUTs through boto3 with the endpoint, region
        and (if it was given some) credentials it was built with; a PyFileSystem(FSSpecHandler) uses fsspec's
        create mode; others check then write."""
        if isinstance(fs, pafs.S3FileSystem):
            built = dict(fs.__reduce__()[1][0])  # the constructor arguments (pyarrow's pickling support)
            opts = {k: built[k] for k in ("endpoint_override", "region", "scheme", "force_virtual_addressing")
                    if built.get(k)}
            keys = {}
            if built.get("access_key") and built.get("secret_key"):  # given explicitly: boto3 must use them too
                keys = {"aws_access_key_id": built["access_key"], "aws_secret_access_key": built["secret_key"],
                        **({"aws_session_token": built["session_token"]} if built.get("session_token") else {})}
            client = functools.partial(_s3_client, tuple(sorted({**opts, **keys}.items())))
            return cls(fs, _s3_create_only(client), atomic_create=True, s3_client=client, options=opts)
        handler = getattr(fs, "handler", None)
        inner = getattr(handler, "fs", None)
        if inner is not None and hasattr(inner, "pipe_file"):
            return cls(fs, _fsspec_create_only(inner), atomic_create=False)
        return cls(fs)

    # -- small objects
    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        """One whole-object PUT: readers see the old object or this one."""
        with self.fs.open_output_stream(path) as f:
            f.write(data)

    def create_only(self, path: str, data: bytes) -> bool:
        """Write `data` at `path` unless an object is there; True if this call wrote it."""
        if self._create_only is not None:
            return self._create_only(path, data)
        if self.exists(path):
            return False
        self.write_bytes(path, data)
        return True

    # -- listing and metadata
    def info(self, path: str) -> pafs.FileInfo:
        return self.fs.get_file_info(path)

    def exists(self, path: str) -> bool:
        return self.info(path).type != pafs.FileType.NotFound

    def is_file(self, path: str) -> bool:
        return self.info(path).type == pafs.FileType.File

    def is_dir(self, path: str) -> bool:
        return self.info(path).type == pafs.FileType.Directory

    def list(self, path: str, recursive: bool = False) -> list[pafs.FileInfo]:
        """Entries under `path` (empty when there is nothing)."""
        try:
            return self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
        except FileNotFoundError:
            return []

    @staticmethod
    def age_seconds(info: pafs.FileInfo, now: float) -> float:
        mtime = info.mtime
        if mtime is None:
            return 0.0  # a backend without modification times: never old enough unless the grace period is 0
        if mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=dt.timezone.utc)
        return now - mtime.timestamp()

    # -- streams
    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str) -> pa.NativeFile:
        return self.fs.open_output_stream(path)

    # -- deletes
    def delete_file(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def delete_prefix(self, path: str) -> None:
        """Every object under `path/` (delete_dir: deleting files one by one makes pyarrow leave a marker)."""
        try:
            self.fs.delete_dir(path)
        except FileNotFoundError:
            pass

    def abort_stale_uploads(self, prefix: str, older_than_seconds: float, dry_run: bool = False) -> list[str]:
        """Abort multipart uploads under `prefix` started more than `older_than_seconds` ago (S3 only: the parts
        of a killed upload are invisible but stored, and billed, until aborted). Returns their keys."""
        if self._s3_client is None:
            return []
        client = self._s3_client()
        bucket, key_prefix = _split_bucket(prefix)
        now = time.time()
        out = []
        paginator = client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix):
            for up in page.get("Uploads", []):
                if now - up["Initiated"].timestamp() < older_than_seconds:
                    continue
                out.append(f"{bucket}/{up['Key']}")
                if not dry_run:
                    client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        return out


def _s3_create_only(client: Callable[[], Any]) -> Callable[[str, bytes], bool]:
    def create(path: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = _split_bucket(path)
        for attempt in range(10):
            try:
                client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
                return True
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code == "PreconditionFailed":
                    return False
                if code == "ConditionalRequestConflict" and attempt < 9:  # a concurrent create: ask again
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if code == "NoSuchBucket":
                    raise FileNotFoundError(f"bucket {bucket!r} does not exist") from None
                raise
        raise AssertionError("unreachable")
    return create


def _fsspec_create_only(inner) -> Callable[[str, bytes], bool]:
    def create(path: str, data: bytes) -> bool:
        try:
            inner.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
    return create
