"""The generate stage through the in-process backend and through Ray Data LLM, side by side on the same prompts.

Both generate shard 0 of 3 of the ML-100K item prompts (configs/ml100k-oneshot.yaml) in float32
(generation.deterministic, so their texts can be compared). Each backend runs the stage exactly as a DAG task
does (`python -m augment generate` in a child interpreter, augment/stage_process.py), one engine on one core,
from an empty generation cache in its own workdir. The ray backend starts a private Ray on 127.0.0.1 inside that
child (no dashboard) with one engine actor.

What the columns mean:
- wall s: the whole child process (imports, Ray, every engine start, generation, commits);
- start s: what the backend's start() took: the vLLM engine in-process; Ray + tokenizer for ray (its engines start
  inside each wave, see "waves");
- gen s / tok/s: generation time as the stage counts it (after start()) and output tokens per second of it;
- waves (ray): rows per Ray dataset and seconds to its first output batch (engine start + one batch of decoding).

    python bench/generation/bench_ray.py                                  # ML-100K, data.sample_users=10
    python bench/generation/bench_ray.py --set data.sample_users=20 --kind item
    # -> prints a table, writes bench/generation/results_ray.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from augment import kinds, stage_process, stages
from augment.llm.generate import read_cache
from configs import REPO_ROOT, load_config, parse_overrides

# Shard 0 of 3: ~150 of the 438 item prompts that data.sample_users=10 (the smallest sample) gives.
BASE_SETS = ["generation.shards=3", "generation.deterministic=true", "generation.engine.cpu_threads=1"]


def run_backend(backend: str, config: str, sets: list[str], kind: str, root: Path) -> tuple[dict, dict]:
    sets = [*BASE_SETS, *sets, f"workdir={root / backend}", f"generation.backend={backend}"]
    cfg = load_config(config, parse_overrides(sets))
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.prompts(cfg, v)
    table = kinds.KINDS[kind].prompt_table
    args = ["generate", "--config", config, *[x for s in sets for x in ("--set", s)], "--kind", kind,
            "--input", f"{table}={v[table]}", "--shard", "0"]
    started = time.perf_counter()
    [r] = stage_process.run_stage(args)
    wall = time.perf_counter() - started
    texts = read_cache(stages.generation_cache(cfg)).set_index("prompt_hash")["raw_text"].to_dict()
    row = {"backend": backend, "wall_seconds": round(wall, 1), "prompts": r["generated"],
           "llm_calls": r["llm_calls"], "retried": r["retried"], "output_tokens": r["output_tokens"],
           "start_seconds": round(r["engine_start_seconds"], 1),
           "generation_seconds": round(r["generation_seconds"], 1),
           "output_tok_per_s": round(r["output_tokens_per_s"], 1),
           "wall_output_tok_per_s": round(r["output_tokens"] / wall, 1),
           "engine_cores": r["engine_cores"] or r["where"].get("engine_cores", ""),
           "waves": [{k: w.get(k) for k in ("rows", "first_batch_s", "seconds")} for w in r["where"].get("waves", [])]}
    return row, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "ml100k-oneshot.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides (default: data.sample_users=10)")
    parser.add_argument("--kind", choices=["item", "user"], default="item")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_ray.json")))
    args = parser.parse_args()
    args.set = args.set or ["data.sample_users=10"]
    load_before = os.getloadavg()
    shm_before = set(os.listdir("/dev/shm"))
    with tempfile.TemporaryDirectory(prefix="llmfa-bench-ray-") as tmp:
        (base, base_texts), (ray, ray_texts) = (run_backend(b, args.config, args.set, args.kind, Path(tmp))
                                                for b in ("vllm", "ray"))
    same = sum(ray_texts.get(h) == t for h, t in base_texts.items())
    out = {"kind": args.kind, "sets": [*BASE_SETS, *args.set], "cores": len(os.sched_getaffinity(0)),
           "backends": [base, ray], "identical_texts": same, "texts": len(base_texts),
           "wall_ratio_ray_over_vllm": round(ray["wall_seconds"] / base["wall_seconds"], 2),
           "gen_tok_per_s_ratio_ray_over_vllm": round(ray["output_tok_per_s"] / base["output_tok_per_s"], 2),
           "new_dev_shm_entries": sorted(set(os.listdir("/dev/shm")) - shm_before),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"{'backend':<8} {'wall s':>7} {'prompts':>8} {'calls':>6} {'start s':>8} {'gen s':>7} {'tok/s':>7} "
          f"{'wall tok/s':>10}  cores  waves (rows, s to first batch, s)")
    for r in (base, ray):
        waves = [(w["rows"], w["first_batch_s"], w["seconds"]) for w in r["waves"]]
        print(f"{r['backend']:<8} {r['wall_seconds']:>7} {r['prompts']:>8} {r['llm_calls']:>6} "
              f"{r['start_seconds']:>8} {r['generation_seconds']:>7} {r['output_tok_per_s']:>7} "
              f"{r['wall_output_tok_per_s']:>10}  {r['engine_cores']:<5}  {waves or ''}")
    print(f"ray / in-process: wall {out['wall_ratio_ray_over_vllm']}x, generation tok/s "
          f"{out['gen_tok_per_s_ratio_ray_over_vllm']}x; identical texts {same}/{len(base_texts)}; "
          f"new /dev/shm entries {out['new_dev_shm_entries']}")
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
