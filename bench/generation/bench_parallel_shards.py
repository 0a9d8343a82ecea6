"""Two generation shards one after the other (an `llm` pool with 1 slot) vs side by side (2 slots), same prompts.

Each shard runs exactly as the DAG task runs it: `python -m augment generate --shard k` in a child interpreter
(augment/stage_process.py) that starts its own vLLM engine on cores it claims (augment/llm/cpu_slots.py). Both modes
start from an empty generation cache in their own workdir, so each generates every prompt once.

    python bench/generation/bench_parallel_shards.py --kind user          # ML-100K, 40 users: 40 user prompts
    python bench/generation/bench_parallel_shards.py --set data.sample_users=100 --kind item
    # -> prints a table, writes bench/generation/results_parallel_shards.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from augment import kinds, stage_process, stages
from configs import REPO_ROOT, load_config, parse_overrides


def run_mode(mode: str, config: str, sets: list[str], kind: str, root: Path) -> dict:
    sets = [*sets, f"workdir={root / mode}", "generation.shards=2"]
    cfg = load_config(config, parse_overrides(sets))
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.prompts(cfg, v)
    prompt_table = kinds.KINDS[kind].prompt_table
    args = lambda shard: ["generate", "--config", config, *[x for s in sets for x in ("--set", s)],  # noqa: E731
                          "--kind", kind, "--input", f"{prompt_table}={v[prompt_table]}", "--shard", str(shard)]
    started = time.perf_counter()
    if mode == "sequential":
        results = [stage_process.run_stage(args(s))[0] for s in (0, 1)]
    else:
        with ThreadPoolExecutor(2) as pool:
            results = [r[0] for r in pool.map(stage_process.run_stage, [args(0), args(1)])]
    wall = time.perf_counter() - started
    prompts = sum(r["generated"] for r in results)
    tokens = sum(r["output_tokens"] for r in results)
    return {"mode": mode, "wall_seconds": round(wall, 1), "prompts": prompts, "output_tokens": tokens,
            "prompts_per_s": round(prompts / wall, 3), "output_tok_per_s": round(tokens / wall, 1),
            "engine_cores": [r["engine_cores"] for r in results],
            "engine_start_seconds": [round(r["engine_start_seconds"], 1) for r in results],
            "shard_tok_per_s": [round(r["output_tokens_per_s"], 1) for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "ml100k.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides (default: data.sample_users=40)")
    parser.add_argument("--kind", choices=["item", "user"], default="item")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_parallel_shards.json")))
    args = parser.parse_args()
    args.set = args.set or ["data.sample_users=40"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="llmfa-bench-shards-") as tmp:
        rows = [run_mode(mode, args.config, args.set, args.kind, Path(tmp)) for mode in ("sequential", "parallel")]
    seq, par = rows
    out = {"kind": args.kind, "sets": args.set, "cores": len(os.sched_getaffinity(0)), "modes": rows,
           "speedup_prompts_per_s": round(par["prompts_per_s"] / seq["prompts_per_s"], 2),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"{'mode':<11} {'wall s':>7} {'prompts':>8} {'prompts/s':>10} {'tok/s':>7}  cores  engine start s")
    for r in rows:
        print(f"{r['mode']:<11} {r['wall_seconds']:>7} {r['prompts']:>8} {r['prompts_per_s']:>10} "
              f"{r['output_tok_per_s']:>7}  {r['engine_cores']}  {r['engine_start_seconds']}")
    print(f"side by side / one after the other: {out['speedup_prompts_per_s']}x prompts/s")
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
