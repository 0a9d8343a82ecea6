"""In-process Scorer.score() latency for 100 candidates, 1 thread: p50/p99 per model of a registry run.

    OMP_NUM_THREADS=1 python bench/serving/bench_score.py --workdir var/ml100k [--models lightgbm/llm deepfm/llm_kar]
        [--n 2000] [--candidates 100] [--out bench/serving/results_score.json]

Each call: a random known user (10% unknown), 100 random candidates from the catalogue (5% unknown ids).
Also times the naive path (a pandas frame per request through ScoringModel.predict) for the same requests, to show
what precompiling the per-item / per-user rows buys. Prints JSON; machine load (`uptime`) is recorded with it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from models.registry import champion_info, registry_root  # noqa: E402
from models.serving import Scorer  # noqa: E402


def requests(scorer: Scorer, n: int, k: int, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    users, items = scorer.compiled.user_keys, scorer.compiled.item_keys
    out = []
    for _ in range(n):
        u = int(rng.choice(users)) if rng.random() > 0.1 else 10**9
        ids = rng.choice(items, k).astype(np.int64)
        ids[rng.random(k) < 0.05] = 10**9 + 1
        out.append((u, ids))
    return out


def naive(scorer: Scorer, user: int, ids: np.ndarray) -> np.ndarray:
    """Per-request pandas merge + the model's own encoders (what a straightforward server would do)."""
    snap = scorer.snapshot
    frame = snap.scalars("item_id", ids)
    user_row = snap.scalars("user_id", np.asarray([user], dtype=np.int64))
    for c in user_row.columns:
        frame[c] = user_row[c].iloc[0]
    vectors = {}
    for g in scorer.model.required_groups:
        if snap.vector_entry(g).key == "item_id":
            vectors[g] = snap.vectors("item_id", ids, [g])[g]
        else:
            vectors[g] = np.repeat(snap.vectors("user_id", np.asarray([user]), [g])[g], len(ids), axis=0)
    hist = lens = None
    if scorer.model.needs_history:
        h, n = snap.latest_history(np.asarray([user]), int(scorer.model.feature_map["history"]["maxlen"]))
        hist, lens = np.repeat(h, len(ids), axis=0), np.repeat(n, len(ids))
    return scorer.model.predict(frame, vectors, history=hist, history_len=lens)


def time_calls(fn, reqs) -> dict:
    for u, ids in reqs[:50]:
        fn(u, ids)  # warm-up
    lat = []
    for u, ids in reqs:
        t0 = time.perf_counter()
        fn(u, ids)
        lat.append((time.perf_counter() - t0) * 1e3)
    lat = np.asarray(lat)
    return {"calls": len(lat), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "mean_ms": round(float(lat.mean()), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--name", default="ctr")
    p.add_argument("--run", help="run id (default: the champion's run)")
    p.add_argument("--models", nargs="+", default=["lightgbm/llm", "deepfm/llm_kar", "deepfm/llm", "din/llm"])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--naive-n", type=int, default=300)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    reg = registry_root(args.workdir) / args.name
    run = args.run or champion_info(args.workdir, args.name)["model_path"].split("/")[0]
    results = {"uptime_before": os.popen("uptime").read().strip(), "candidates": args.candidates, "models": {}}
    for key in args.models:
        model_dir = reg / run / key / "seed=0"
        if not model_dir.is_dir():
            print(f"skip {key}: no {model_dir}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        scorer = Scorer.from_model_dir(model_dir, Path(args.workdir) / "feature_store", threads=1)
        load = time.perf_counter() - t0
        reqs = requests(scorer, args.n, args.candidates)
        row = {"load_seconds": round(load, 2), "score": time_calls(scorer.score, reqs),
               "naive_pandas": time_calls(lambda u, i: naive(scorer, u, i), reqs[:args.naive_n])}
        u, ids = reqs[0]
        row["max_abs_diff_vs_naive"] = float(np.abs(scorer.score(u, ids) - naive(scorer, u, ids)).max())
        results["models"][key] = row
        print(key, json.dumps(row), flush=True)
    results["uptime_after"] = os.popen("uptime").read().strip()
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
