"""HTTP benchmark of `python -m models.serving` on 127.0.0.1: sustained requests/s and latency at 100 candidates,
then the same run while the champion is re-promoted every few seconds (hot swaps under load).

    OMP_NUM_THREADS=1 python bench/serving/bench_http.py --workdir var/ml100k [--requests 10000] [--concurrency 4]
        [--swap-models deepfm/llm_kar lightgbm/llm] [--swap-every 3] [--out bench/serving/results_http.json]

The workdir's registry and feature_store are COPIED to a temp dir first (the swaps move the copy's champion
pointer, never yours). Every response is checked: HTTP 200 and scores equal to those of the model it names
(computed in-process), so a half-swapped scorer would count as an error. Bounded: --requests per phase and
--max-seconds per phase. The load generator (models/serving/loadgen.py: stdlib http.client keep-alive threads)
runs on the same 2-core box as the server, so figures are a lower bound.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from models.registry import champion_info, promote, registry_root  # noqa: E402
from models.serving import Scorer  # noqa: E402
from models.serving.loadgen import run_load, stop_server, wait_healthy  # noqa: E402
from ops.local_services import free_port  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--name", default="ctr")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--swap-models", nargs="+", default=["deepfm/llm_kar", "lightgbm/llm"],
                   help="<backbone>/<variant> of the champion's run, promoted in turn during the swap phase")
    p.add_argument("--swap-every", type=float, default=3.0)
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    work = tmp / "w"
    for sub in ("registry", "feature_store"):
        shutil.copytree(args.workdir / sub, work / sub, symlinks=True)
    reg = registry_root(work) / args.name
    champ = champion_info(work, args.name)["model_path"]
    run = champ.split("/")[0]
    swap_paths = [f"{run}/{m}/seed=0" for m in args.swap_models]

    rng = np.random.default_rng(0)
    probe = Scorer.from_model_dir(reg / champ, work / "feature_store")
    users, items = probe.compiled.user_keys, probe.compiled.item_keys
    bodies = [{"user_id": int(rng.choice(users)), "item_ids": rng.choice(items, args.candidates).tolist()}
              for _ in range(200)]
    expected = {}
    for path in {champ, *swap_paths}:
        s = Scorer.from_model_dir(reg / path, work / "feature_store")
        expected[path] = [s.score(b["user_id"], b["item_ids"]) for b in bodies]

    def check(i: int, data: dict) -> str | None:
        if not np.allclose(data["scores"], expected[data["model"]["model_path"]][i], rtol=1e-5, atol=1e-7):
            return f"scores differ from {data['model']['model_path']} (body {i})"
        return None

    port = free_port()
    log = open(tmp / "server.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "models.serving", "--workdir", str(work), "--port", str(port),
                               "--poll-seconds", "0.5", "--log-level", "warning"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    results = {"uptime_before": os.popen("uptime").read().strip(), "candidates": args.candidates,
               "concurrency": args.concurrency, "champion": champ}
    try:
        wait_healthy(port)
        run_load(port, bodies, total=300, concurrency=args.concurrency, max_seconds=60, check=check)  # warm-up
        steady = run_load(port, bodies, total=args.requests, concurrency=args.concurrency,
                          max_seconds=args.max_seconds, check=check)
        results["steady"] = steady.summary()
        print("steady", json.dumps(results["steady"]), flush=True)

        stop = threading.Event()
        flips: list[dict] = []

        def flipper() -> None:
            k = 0
            while not stop.wait(args.swap_every):
                target = swap_paths[k % len(swap_paths)]
                k += 1
                promote(work, args.name, reg / target, valid_auc=lambda m: 0.5, margin=0.0, force=True)
                flips.append({"at_s": round(time.perf_counter() - started, 2), "to": target})

        started = time.perf_counter()
        t = threading.Thread(target=flipper, daemon=True)
        t.start()
        swap = run_load(port, bodies, total=args.requests, concurrency=args.concurrency,
                        max_seconds=args.max_seconds, check=check)
        stop.set()
        t.join()
        results["during_swaps"] = {**swap.summary(), "promotions": len(flips)}
        print("during_swaps", json.dumps(results["during_swaps"]), flush=True)
    finally:
        stop_server(server)
        log.close()
        results["uptime_after"] = os.popen("uptime").read().strip()
        tail = (tmp / "server.log").read_text()[-2000:]
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(results, indent=1)
    print(text)
    if tail.strip():
        print("server log tail:\n" + tail)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if results["steady"]["errors"] == 0 and results["during_swaps"]["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
