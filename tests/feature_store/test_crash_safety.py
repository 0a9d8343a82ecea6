"""kill -9 a publishing process at random points: readers see an old or a new complete version, never partial.

The child publishes a ~25 MB table in a loop (alternating a fixed recipe, which is written once and then reused,
and new recipes, each written in full); the parent kills it with SIGKILL after a random delay while a reader thread keeps reading.
After every kill: latest and every version read back complete and consistent, and `validate` passes; at the end
`gc` removes the leftovers of interrupted publishes.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from feature_store import FeatureStore, vector_matrix
from feature_store.maintenance import gc, validate

ROWS, DIM = 100_000, 32

CHILD = textwrap.dedent(f"""
    import sys, itertools
    import numpy as np, pyarrow as pa
    from feature_store import Feature, FeatureStore, TableSpec
    spec = TableSpec("big", "item", ("item_id",), (Feature("emb", "vector", dim={DIM}),),
                     created_timestamp=None)
    store = FeatureStore(sys.argv[1])
    seed = int(sys.argv[2])
    def table(gen):
        n = {ROWS} + gen * 1000  # row count tells which generation a reader got
        emb = np.random.default_rng(gen).random((n, {DIM}), dtype=np.float32)
        emb[:, 0] = gen
        return pa.table({{"item_id": np.arange(n), "event_timestamp": pa.array(np.zeros(n, dtype="int64"),
                         pa.timestamp("us", tz="UTC")), "emb": pa.FixedSizeListArray.from_arrays(emb.ravel(), {DIM})}})
    tables = [table(seed * 10 + i) for i in range(2)]
    print("ready", flush=True)
    for i in itertools.count():
        g = i % 2
        recipe = {{"fixed": True}} if i % 2 == 0 else {{"seed": seed, "i": i}}
        store.publish(spec, tables[g], recipe=recipe)
""")


def _check_consistent(store: FeatureStore, version: str) -> None:
    t, m = store._read_with_manifest("big", version)
    gens = np.unique(vector_matrix(t["emb"])[:, 0])
    assert len(gens) == 1, f"{version}: mixed generations {gens[:5]}"
    assert t.num_rows == m["rows"] == ROWS + int(gens[0]) * 1000, (version, t.num_rows, m["rows"], gens)


@pytest.mark.slow  # ~12 s (six publishing children killed at random points): over the fast tier's 10 s per test (tests/conftest.py)
def test_sigkill_during_publish_leaves_old_or_new_version(tmp_path):
    root = tmp_path / "fs"
    store = FeatureStore(root)
    rng = random.Random(1234)
    stop, errors, reads = threading.Event(), [], [0]

    def reader() -> None:
        while not stop.is_set():
            if not store.tables():
                time.sleep(0.01)
                continue
            try:
                _check_consistent(store, "latest")
                reads[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                stop.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    kills = 0
    try:
        for it in range(6):
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(it)], stdout=subprocess.PIPE,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.8))
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += child.returncode == -signal.SIGKILL
            if store.tables():
                _check_consistent(store, "latest")
                for v in store.versions("big"):
                    _check_consistent(store, v["version"])
                bad = [r for r in validate(store) if not r["ok"]]
                assert not bad, bad
    finally:
        stop.set()
        th.join(timeout=30)
    assert not errors, errors[:3]
    assert kills >= 5 and reads[0] > 0
    # Leftovers of killed publishes are invisible to readers and collected by gc.
    removed = gc(store, keep=100, grace_seconds=0)
    print("gc removed", [r["reason"] for r in removed], "reads", reads[0])
    data_dirs = {p.name for p in (root / "big" / "_data").iterdir()}
    linked = {Path(os.readlink(p)).name for p in (root / "big").glob("version=*")}
    assert data_dirs == linked
    assert all(r["ok"] for r in validate(store))
