"""A real uvicorn server (subprocess, 127.0.0.1) under load while the champion pointer flips between models:
zero failed requests, and every response's scores are exactly those of the model it names (no half-swapped
scorer). Bounded: stops when the flips are done, at most 50,000 requests / 120 s."""
from __future__ import annotations

import numpy as np
import pytest

from models.registry import promote
from models.serving import Scorer
from models.serving.loadgen import Served, run_load_while, wait_healthy

PER_MODEL = 30  # responses each model must give before and after a flip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_zero_failures_during_hot_swaps(server, model_dirs):
    """Paced by what the server did, not by sleeps: each flip waits until the model being replaced has served
    requests, promotes the next one, and waits until responses name it (its own scores are checked per response)."""
    work, port = server
    reg = work / "registry" / "ctr"
    rel = {k: str(d.relative_to(d.parents[3])) for k, d in model_dirs.items()}
    rng = np.random.default_rng(0)
    bodies = [{"user_id": int(u), "item_ids": rng.integers(1, 320, 100).tolist()} for u in (1, 7, 10**6)]
    expected = {}
    for k in rel:
        scorer = Scorer.from_model_dir(reg / rel[k], work / "feature_store")
        expected[rel[k]] = [scorer.score(b["user_id"], b["item_ids"]) for b in bodies]

    served = Served()

    def check(i: int, data: dict) -> str | None:
        path = data["model"]["model_path"]
        served.add(path)
        if not np.allclose(data["scores"], expected[path][i], rtol=1e-5, atol=1e-7):
            return f"scores differ from {path} on body {i}"
        return None

    initial = wait_healthy(port)["model"]["model_path"]
    order = [rel[k] for k in ("lightgbm/llm", "din/llm", "deepfm/llm_kar") if rel[k] != initial]
    plan = [*order, order[0]]  # every flip changes the model
    flips: list[str] = []
    problems: list[str] = []

    def served_at_least(path: str, n: int) -> bool:
        if not served.wait(path, n):
            problems.append(f"{path}: {served[path]} responses, waited for {n}")
            return False
        return True

    def flipper() -> None:
        current = initial
        for path in plan:
            if not served_at_least(current, served[current] + PER_MODEL):  # the old model is serving
                return
            before = served[path]
            promote(work, "ctr", reg / path, valid_auc=lambda m: 0.5, margin=0.0, force=True)
            if not served_at_least(path, before + PER_MODEL):  # ... and then the new one is
                return
            flips.append(path)
            current = path

    stats = run_load_while(port, bodies, flipper, total=50_000, concurrency=3, max_seconds=120, check=check)
    s = stats.summary()
    print(s)
    assert not problems, problems
    assert stats.errors == 0, s["first_errors"]
    assert flips == plan, s
    assert {initial, *plan} <= set(stats.models), s  # every model of the plan answered requests
    assert wait_healthy(port)["model"]["model_path"] == plan[-1]
