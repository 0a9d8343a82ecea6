"""Shared bench data: an item table (N entities x V snapshots, 64-d vector) and labels; peak-RSS helper.

Generated once per size into BENCH_DIR (default /tmp/fs-bench) as plain Parquet, so our store and Feast read the
same bytes. Imported by the other bench scripts (both venvs: numpy/pandas/pyarrow only).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/tmp/fs-bench"))
DIM = 64
T0 = 1_600_000_000  # seconds; snapshots every 30 days, labels spread over the whole span
DAY = 86_400


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def data_paths(n_entities: int, n_versions: int, n_labels: int) -> dict[str, Path]:
    d = BENCH_DIR / f"e{n_entities}_v{n_versions}_l{n_labels}"
    return {"dir": d, "items": d / "items.parquet", "items_list": d / "items_list.parquet",
            "labels": d / "labels.parquet"}


def make_data(n_entities: int, n_versions: int, n_labels: int, seed: int = 0) -> dict[str, Path]:
    """Write items (fixed_size_list vectors), items_list (same, list<float> for Feast) and labels once."""
    p = data_paths(n_entities, n_versions, n_labels)
    if p["labels"].exists():
        return p
    p["dir"].mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.tile(np.arange(n_entities, dtype=np.int64), n_versions)
    snap = np.repeat(np.arange(n_versions), n_entities)
    ev = T0 + snap * 30 * DAY + rng.integers(0, DAY, len(ids))  # each snapshot lands at a slightly different time
    emb = rng.standard_normal((len(ids), DIM), dtype=np.float32)
    ts = pa.array(ev * 1_000_000, pa.timestamp("us", tz="UTC"))
    cols = {"item_id": ids, "event_timestamp": ts, "created_timestamp": ts,
            "pop": rng.random(len(ids), dtype=np.float32)}
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), DIM)
    pq.write_table(pa.table({**cols, "emb": fsl}), p["items"])
    lst = pa.ListArray.from_arrays(pa.array(np.arange(0, len(ids) * DIM + 1, DIM, dtype=np.int32)),
                                   pa.array(emb.ravel()))
    pq.write_table(pa.table({**cols, "emb": lst}), p["items_list"])
    # Labels: 2% unknown item ids; times from before the first snapshot to after the last one.
    lab_ids = rng.integers(0, int(n_entities * 1.02), n_labels)
    lab_t = T0 - 10 * DAY + rng.integers(0, (n_versions * 30 + 20) * DAY, n_labels)
    pq.write_table(pa.table({"item_id": lab_ids, "event_timestamp": pa.array(lab_t * 1_000_000, pa.timestamp(
        "us", tz="UTC")), "label": rng.integers(0, 2, n_labels, dtype=np.int8)}), p["labels"])
    return p


def emit(result: dict) -> None:
    """Print one JSON line for run_all to collect."""
    print("RESULT " + json.dumps(result), flush=True)


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": len(a)}


if __name__ == "__main__":
    print(make_data(*map(int, sys.argv[1:4])))
