"""kill -9 a process publishing to S3 (a real S3-compatible server on 127.0.0.1) at each step of the publish: mid
data upload, after the data (before the manifest), after the manifest (before the version pointer), after the
pointer (before `_latest`). A reader thread reads `latest` the whole time. After every kill: readers see the old
version or the new one, complete, never a part; `validate` passes; a re-run publishes (or, once the pointer exists,
reuses) fine; at the end gc removes every leftover and the incomplete multipart upload.

The child stops itself at a step boundary (its test script wraps the store's publish step methods to print the
step's name and sleep) so each kill point is hit for sure; the kill itself is a real SIGKILL of a real process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from feature_store import NotFound, vector_matrix
from feature_store.locations import open_store
from feature_store.maintenance import gc, validate

ROWS, DIM = 60_000, 64  # ~15 MB of float32 vectors (stored uncompressed): a multipart upload of several parts
STOP_AFTER_BYTES = 11 << 20

CHILD = textwrap.dedent(f"""
    import json, sys, time
    import numpy as np, pyarrow as pa
    from feature_store import Feature, TableSpec, object_fs
    from feature_store.locations import open_store
    from feature_store.object_store import ObjectFeatureStore as S

    uri, options, gen, point = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    spec = TableSpec("big", "item", ("item_id",), (Feature("emb", "vector", dim={DIM}),), created_timestamp=None)
    n = {ROWS} + gen * 1000  # the row count tells which generation a reader got
    emb = np.random.default_rng(gen).random((n, {DIM}), dtype=np.float32)
    emb[:, 0] = gen
    table = pa.table({{"item_id": np.arange(n), "event_timestamp": pa.array(np.zeros(n, dtype="int64"),
                      pa.timestamp("us", tz="UTC")), "emb": pa.FixedSizeListArray.from_arrays(emb.ravel(), {DIM})}})

    def stop(tag):
        print(tag, flush=True)
        time.sleep(3600)

    def before(name, method):
        def wrapped(*a, **k):
            stop(name)
        setattr(S, method, wrapped)

    if point == "mid-upload":
        write = object_fs.HashingWriter.write
        def partial(self, b):
            n = write(self, b)
            if self.size > {STOP_AFTER_BYTES}:
                stop("mid-upload")
            return n
        object_fs.HashingWriter.write = partial
    elif point == "before-manifest":
        before(point, "_upload_manifest")
    elif point == "before-pointer":
        before(point, "_create_pointer")
    elif point == "before-latest":
        before(point, "_set_latest")
    store = open_store(uri, s3=options)
    ref = store.publish(spec, table, recipe={{"gen": gen}})
    print("done", ref.version, ref.written, flush=True)
""")


def _start(uri: str, options: dict, gen: int, point: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, uri, json.dumps(options), str(gen), point],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _line(child: subprocess.Popen, timeout: float = 180) -> str:
    """The child's next stdout line (it has printed it once it reached the step)."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(child.stdout.readline().strip()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert out and out[0], f"child printed nothing within {timeout} s (exit code {child.poll()})"
    return out[0]


def _check(store, version: str) -> int:
    """A version reads back complete: one generation, as many rows as that generation has. Returns the gen."""
    snap = store.open_version("big", version)
    t = snap.read()
    gens = np.unique(vector_matrix(t["emb"])[:, 0])
    assert len(gens) == 1, f"{version}: mixed generations {gens[:5]}"
    assert t.num_rows == snap.manifest["rows"] == ROWS + int(gens[0]) * 1000, (version, t.num_rows)
    return int(gens[0])


@pytest.mark.slow  # ~17 s (a child process per publish step, killed mid-upload): over the fast tier's 10 s per test (tests/conftest.py)
@pytest.mark.timeout(900)
def test_sigkill_at_each_publish_step_on_s3(s3_server):
    bucket = s3_server.bucket()
    uri, options = f"s3://{bucket}/features", s3_server.options
    store = open_store(uri, s3=options)
    client = s3_server.client()

    first = _start(uri, options, 0, "none")
    assert _line(first).startswith("done ") and first.wait(60) == 0
    old = store.resolve("big")

    stop, errors, reads = threading.Event(), [], [0]

    def reader() -> None:
        while not stop.is_set():
            try:
                _check(store, "latest")
                reads[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                stop.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    points = {1: "mid-upload", 2: "before-manifest", 3: "before-pointer", 4: "before-latest"}
    versions = {}
    try:
        for gen, point in points.items():
            child = _start(uri, options, gen, point)
            assert _line(child) == point
            if point == "mid-upload":  # really mid-upload: the server holds parts of an unfinished upload
                deadline = time.monotonic() + 60
                while True:
                    ups = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
                    parts = [p for u in ups for p in client.list_parts(
                        Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])]
                    if parts:
                        break
                    assert time.monotonic() < deadline, "no uploaded part seen on the server"
                    time.sleep(0.2)
            child.send_signal(signal.SIGKILL)
            assert child.wait(30) == -signal.SIGKILL
            assert store.resolve("big") == old and _check(store, "latest") == 0  # latest: still the old one
            have = [v["version"] for v in store.versions("big")]
            for v in have:
                _check(store, v)
            assert all(r["ok"] for r in validate(store)), validate(store)
            if point == "before-latest":  # the pointer exists: the new version is complete under its id
                assert len(have) == 2 and _check(store, next(v for v in have if v != old)) == gen
            else:
                assert have == [old]
    finally:
        stop.set()
        th.join(timeout=60)
    assert not errors, errors[:3]
    assert reads[0] > 0

    # What the kills left: an unfinished upload (invisible), a data-only prefix, a data+manifest prefix, each
    # unreferenced; readers never saw them.
    ups = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert len(ups) == 1 and ups[0]["Key"].endswith("/part-0.parquet")
    referenced = {store.manifest("big", v["version"])["publish_id"] for v in store.versions("big")}
    prefixes = {k.split("/")[3] for k in s3_server.keys(bucket) if k.startswith("features/big/_data/")} - {""}
    assert len(prefixes - referenced) == 2

    # Re-runs: every generation publishes; the one whose pointer was already there is reused and made latest.
    for gen in points:
        child = _start(uri, options, gen, "none")
        done = _line(child).split()
        assert child.wait(120) == 0 and done[0] == "done"
        versions[gen] = done[1]
        assert done[2] == ("False" if gen == 4 else "True"), (gen, done)
        assert store.resolve("big") == versions[gen] and _check(store, "latest") == gen
    assert {_check(store, v) for v in versions.values()} == set(points)

    removed = gc(store, keep=10, grace_seconds=0)
    assert sorted(r["reason"] for r in removed) == ["incomplete multipart upload"] + \
        ["leftover of an interrupted publish"] * 2, removed
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    referenced = {store.manifest("big", v["version"])["publish_id"] for v in store.versions("big")}
    prefixes = {k.split("/")[3] for k in s3_server.keys(bucket) if k.startswith("features/big/_data/")} - {""}
    assert prefixes == referenced and len(referenced) == 5
    assert all(r["ok"] for r in validate(store))
    with pytest.raises(NotFound):
        store.resolve("big", "0" * 12)
