"""A real uvicorn server (subprocess, 127.0.0.1) under load while the champion pointer flips between models:
zero failed requests, and every response's scores are exactly those of the model it names (no half-swapped
scorer). Bounded: at most 4000 requests / 90 s."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from models.registry import promote
from models.serving import Scorer
from models.serving.loadgen import run_load, stop_server, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(served_workdir, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(served_workdir, work, symlinks=True)
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "models.serving", "--workdir", str(work), "--port", str(port),
                             "--poll-seconds", "0.2", "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, timeout=90)
        yield work, port
    finally:
        stop_server(proc)
        log.close()
        print((tmp_path / "server.log").read_text()[-3000:])


def test_zero_failures_during_hot_swaps(server, model_dirs):
    work, port = server
    reg = work / "registry" / "ctr"
    rel = {k: str(d.relative_to(d.parents[3])) for k, d in model_dirs.items()}
    rng = np.random.default_rng(0)
    bodies = [{"user_id": int(u), "item_ids": rng.integers(1, 320, 100).tolist()} for u in (1, 7, 10**6)]
    expected = {}
    for k in rel:
        scorer = Scorer.from_model_dir(reg / rel[k], work / "feature_store")
        expected[rel[k]] = [scorer.score(b["user_id"], b["item_ids"]) for b in bodies]

    def check(i: int, data: dict) -> str | None:
        want = expected[data["model"]["model_path"]][i]
        if not np.allclose(data["scores"], want, rtol=1e-5, atol=1e-7):
            return f"scores differ from {data['model']['model_path']} on body {i}"
        return None

    flips: list[str] = []

    def flipper() -> None:
        for k in ["lightgbm/llm", "din/llm", "deepfm/llm_kar", "lightgbm/llm"]:
            time.sleep(0.5)
            promote(work, "ctr", reg / rel[k], valid_auc=lambda m: 0.5, margin=0.0, force=True)
            flips.append(rel[k])

    t = threading.Thread(target=flipper)
    t.start()
    stats = run_load(port, bodies, total=4000, concurrency=3, max_seconds=90, check=check)
    t.join()
    s = stats.summary()
    print(s)
    assert stats.errors == 0, s["first_errors"]
    assert len(flips) == 4 and len(stats.models) >= 3, s  # requests were served by several models
    deadline = time.time() + 10
    while wait_healthy(port)["model"]["model_path"] != flips[-1] and time.time() < deadline:
        time.sleep(0.2)
    assert wait_healthy(port)["model"]["model_path"] == flips[-1]
