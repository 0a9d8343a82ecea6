"""Online lookup latency of OnlineTable (100 keys and 1 key, one thread), plus the key-index choice measured.

    python bench/feature_store/online_ours.py N_ENTITIES N_VERSIONS N_LABELS   (uses pit_ours.py's store)
Prints RESULT JSON lines with p50/p99 in milliseconds.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from bench_common import Timer, emit, make_data, peak_rss_mb, percentiles_ms  # noqa: E402

from feature_store import FeatureStore, OnlineTable  # noqa: E402


def _lat(fn, batches) -> dict:
    for b in batches[:50]:
        fn(b)  # warm up
    out = []
    for b in batches:
        t = time.perf_counter()
        fn(b)
        out.append(time.perf_counter() - t)
    return percentiles_ms(out)


def main(n_entities: int, n_versions: int, n_labels: int, calls: int = 5000) -> None:
    p = make_data(n_entities, n_versions, n_labels)
    store = FeatureStore(p["dir"] / "store")
    if not store.tables():
        sys.exit("run pit_ours.py first (it publishes the bench table)")
    with Timer() as t:
        table = OnlineTable.load(store, "item_emb", "latest")
    emit({"bench": "online_load", "impl": "ours", "entities": n_entities, "seconds": round(t.seconds, 3),
          "peak_rss_mb": round(peak_rss_mb(), 1)})
    rng = np.random.default_rng(0)
    hi = int(n_entities * 1.02)  # 2% unknown keys
    for k in (100, 1):
        batches = [rng.integers(0, hi, k) for _ in range(calls)]
        emit({"bench": "online", "impl": "ours", "call": "get_vectors", "keys": k,
              **_lat(lambda b: table.get_vectors("emb", b), batches)})
        emit({"bench": "online", "impl": "ours", "call": "get(all features)", "keys": k,
              **_lat(table.get, batches)})
        list_batches = [b.tolist() for b in batches]
        emit({"bench": "online", "impl": "ours", "call": "get_vectors(list of int)", "keys": k,
              **_lat(lambda b: table.get_vectors("emb", b), list_batches)})
    # The index choice: sorted keys + searchsorted (used) vs a Python dict, 100 keys.
    sk = table._sorted_keys
    d = {int(x): i for i, x in enumerate(sk)}
    batches = [rng.integers(0, hi, 100) for _ in range(calls)]
    emit({"bench": "key_index", "impl": "searchsorted", "keys": 100,
          **_lat(lambda b: np.searchsorted(sk, b), batches)})
    emit({"bench": "key_index", "impl": "dict", "keys": 100,
          **_lat(lambda b: np.fromiter((d.get(x, -1) for x in b.tolist()), np.int64, len(b)), batches)})


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
