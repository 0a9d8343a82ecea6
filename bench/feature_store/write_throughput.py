"""Publish throughput for an N-row table with a 64-d vector (schema check, Parquet write, fsync, sha256, manifest).

    python bench/feature_store/write_throughput.py [N_ROWS]
Prints RESULT JSON lines: rows/s and MB/s (in-memory Arrow bytes and bytes on disk) for Arrow and pandas input.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from bench_common import BENCH_DIR, DIM, Timer, emit  # noqa: E402

from feature_store import Feature, FeatureStore, TableSpec  # noqa: E402

SPEC = TableSpec("item_emb", "item", ("item_id",), (Feature("emb", "vector", dim=DIM), Feature("pop", "float32")))


def main(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    ts = pa.array(np.full(n, 1_600_000_000_000_000), pa.timestamp("us", tz="UTC"))
    emb = rng.standard_normal((n, DIM), dtype=np.float32)
    table = pa.table({"item_id": np.arange(n), "event_timestamp": ts, "created_timestamp": ts,
                      "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), DIM),
                      "pop": rng.random(n, dtype=np.float32)})
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=BENCH_DIR, prefix="write-"))
    try:
        store = FeatureStore(root)
        inputs = {"arrow": table, "pandas(object col of np arrays)": table.to_pandas()}
        for i, (kind, data) in enumerate(inputs.items()):
            with Timer() as t:
                ref = store.publish(SPEC, data, recipe={"bench": "write", "i": i})
            disk = sum(f["bytes"] for f in store.manifest("item_emb", ref.version)["files"])
            emit({"bench": "write", "impl": "ours", "input": kind, "rows": n, "seconds": round(t.seconds, 3),
                  "rows_per_s": round(n / t.seconds), "arrow_mb_per_s": round(table.nbytes / 2**20 / t.seconds, 1),
                  "disk_mb_per_s": round(disk / 2**20 / t.seconds, 1), "disk_mb": round(disk / 2**20, 1)})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
