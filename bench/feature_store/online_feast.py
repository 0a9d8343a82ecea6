"""Feast `get_online_features` latency with its SQLite online store (100 keys and 1 key, one thread).

    /root/.cache/feast-bench-venv/bin/python bench/feature_store/online_feast.py N_ENTITIES N_VERSIONS N_LABELS
Materialises the same item table into SQLite first (timed and reported), then prints p50/p99 RESULT lines.
"""
from __future__ import annotations

import sys
import time
import warnings
from datetime import datetime, timezone

import numpy as np
from bench_common import Timer, emit, make_data, percentiles_ms  # noqa: E402
from pit_feast import feast_store  # noqa: E402

warnings.filterwarnings("ignore")


def main(n_entities: int, n_versions: int, n_labels: int, calls: int = 300) -> None:
    p = make_data(n_entities, n_versions, n_labels)
    repo = p["dir"] / "feast_online_repo"
    fs = feast_store(repo, p["items_list"])
    marker = repo / "materialized"
    if not marker.exists():
        with Timer() as t:
            fs.materialize(datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc))
        marker.write_text(str(t.seconds))
    emit({"bench": "online_load", "impl": "feast", "what": "materialize to sqlite (measured on first run)",
          "entities": n_entities, "seconds": round(float(marker.read_text()), 1)})
    rng = np.random.default_rng(0)
    hi = int(n_entities * 1.02)
    feats = ["item_emb:emb", "item_emb:pop"]
    for k in (100, 1):
        batches = [[{"item_id": int(x)} for x in rng.integers(0, hi, k)] for _ in range(calls)]
        for b in batches[:10]:
            fs.get_online_features(features=feats, entity_rows=b).to_dict()
        lat = []
        for b in batches:
            t0 = time.perf_counter()
            out = fs.get_online_features(features=feats, entity_rows=b).to_dict()
            lat.append(time.perf_counter() - t0)
        assert len(out["emb"]) == k
        emit({"bench": "online", "impl": "feast", "call": "get_online_features(...).to_dict()", "keys": k,
              **percentiles_ms(lat)})


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
