"""Local store vs S3 store on the same table, side by side in one run: publish (new version), publish of a recipe
already there (reuse), full read, key+scalar read (column projection), point-in-time join, online load.

    python bench/feature_store/object_store.py [N_ROWS] [REPEATS]     # default 200000 rows (64-d vectors), 3

The S3 side is moto's server (`python -m moto.server`) started here on 127.0.0.1 and stopped at the end. It is NOT
real S3: there is no network between client and server, and every request is handled by a single Python process,
so per-request latency is far below S3's (tens of ms to first byte) while bulk throughput is bounded by moto's
Python code rather than by the network. The ratios say what the object layout costs in requests and copies on
this machine; they do not predict S3 timings. Prints a table and RESULT JSON lines (median of REPEATS).
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_common import BENCH_DIR, DIM, Timer, emit  # noqa: E402

from feature_store import Feature, OnlineTable, TableSpec, point_in_time_join  # noqa: E402
from feature_store.locations import open_store  # noqa: E402
from ops.local_services import free_port  # noqa: E402

SPEC = TableSpec("item_emb", "item", ("item_id",), (Feature("emb", "vector", dim=DIM), Feature("pop", "float32")))


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_buckets()
            break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("moto server did not start (pip install 'moto[server]')")
            time.sleep(0.1)
    client.create_bucket(Bucket="bench")
    return proc, endpoint


def make_table(n: int) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(0)
    ids = np.arange(n, dtype=np.int64)
    ts = pa.array((1_600_000_000 + rng.integers(0, 10**7, n)) * 1_000_000, pa.timestamp("us", tz="UTC"))
    table = pa.table({"item_id": ids, "event_timestamp": ts, "created_timestamp": ts,
                      "emb": pa.FixedSizeListArray.from_arrays(pa.array(
                          rng.standard_normal((n, DIM), dtype=np.float32).ravel()), DIM),
                      "pop": rng.random(n, dtype=np.float32)})
    m = min(n, 100_000)
    labels = pa.table({"item_id": rng.integers(0, n, m), "event_timestamp": pa.array(
        (1_600_000_000 + rng.integers(0, 2 * 10**7, m)) * 1_000_000, pa.timestamp("us", tz="UTC"))})
    return table, labels


def measure(store, table: pa.Table, labels: pa.Table, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {}

    def run(name: str, fn) -> None:
        with Timer() as t:
            fn()
        times.setdefault(name, []).append(t.seconds)

    for r in range(repeats):
        run("publish (new version)", lambda: store.publish(SPEC, table, recipe={"bench": "object", "r": r}))
        run("publish (reuse)", lambda: store.publish(SPEC, table, recipe={"bench": "object", "r": r}))
        run("read all columns", lambda: store.read("item_emb"))
        run("read keys + scalar", lambda: store.read("item_emb", columns=["item_id", "pop"]))
        run("point-in-time join", lambda: point_in_time_join(labels, store, {"item_emb": store.resolve("item_emb")},
                                                             threads=1))
        run("online load", lambda: OnlineTable.load(store, "item_emb"))
    return {k: statistics.median(v) for k, v in times.items()}


def main(n: int = 200_000, repeats: int = 3) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance-metadata address
    table, labels = make_table(n)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=BENCH_DIR, prefix="object-"))
    proc, endpoint = start_moto()
    try:
        local = open_store(root / "store")
        s3 = open_store("s3://bench/features", s3={"endpoint_override": endpoint, "region": "us-east-1"})
        results = {"local": measure(local, table, labels, repeats), "s3 (moto)": measure(s3, table, labels, repeats)}
        size = local.manifest("item_emb")["files"][0]["bytes"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{n} rows x {DIM}-d vectors, Parquet file {size / 2**20:.1f} MB; median of {repeats} (seconds)")
    print(f"{'step':26} {'local':>9} {'s3 (moto)':>10} {'s3/local':>9}")
    for step in results["local"]:
        a, b = results["local"][step], results["s3 (moto)"][step]
        print(f"{step:26} {a:9.3f} {b:10.3f} {b / a:8.1f}x")
        emit({"bench": "object_store", "step": step, "rows": n, "file_mb": round(size / 2**20, 1),
              "local_s": round(a, 4), "s3_moto_s": round(b, 4), "ratio": round(b / a, 2)})


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
