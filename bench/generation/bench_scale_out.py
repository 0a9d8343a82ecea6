"""Generation scale-out benchmark (issue 14): the main job's bootstrap prompts (every ML-100K item and user prompt
of configs/ml100k.yaml's bootstrap interval) through each way the pipeline can run them, in one run, one after the
other on the same machine.

- `bare`: one vLLM engine (one core) and one `LLM.chat` call per kind on every prompt: the floor.
- `stage`: the same engine, right after, our generation stage on the same prompts (one shard, fresh cache):
  submit-ahead, validation, retries, one committed Parquet file per batch. Goal: >= 95% of bare's throughput.
- `sequential`: the DAG's shards (item 0, 1, user 0, 1) one after the other, each `python -m augment generate`
  in its own interpreter with its own engine: what `dag.test()` did before issue 14.
- `parallel`: the same four shard processes started together, as the LocalExecutor runs the mapped tasks; each
  engine claims a free core (augment/llm/cpu_slots.py), the third and fourth wait for one. Goal: >= 1.7x sequential's
  prompts/s on 2 cores.
- `openai`: one vLLM OpenAI server (`python -m augment serve-llm`, one core) and the stage with
  `generation.backend: openai` on the same prompts (one shard). Goal: within 10% of `stage`.

Stage/bare/openai throughput excludes engine start-up (reported apart); sequential/parallel are wall time of the
whole generation step, start-ups included, as a user waits for it. Each mode has its own workdir and cache, so
every mode generates every prompt. Prompts/s counts prompts; tok/s counts every output token, retries included
(the bare call makes no retries: its tok/s is the fair comparison for the engine, prompts/s for the user).

    python -m bench.generation.bench_scale_out                    # full bootstrap prompts, every mode (~70 min)
    python -m bench.generation.bench_scale_out --set data.sample_users=60 --modes bare,stage,openai
    # -> prints a table, writes bench/generation/results_scale_out.json and scale_out.png

Internal: the parent re-runs this module with --child MODE for the engine-holding modes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ops.local_services import free_port

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KINDS = ("item", "user")
MODES = ("bare", "stage", "sequential", "parallel", "openai")


def bootstrap_sets(config: str, sets: list[str]) -> list[str]:
    """A daily (stream) config's bootstrap interval: the run with every prompt of the main job's first run."""
    cfg = _cfg(config, sets)
    if cfg.stream is not None and cfg.stream.end is None:
        return [f"stream.end={cfg.stream.start.isoformat()}", *sets]
    return sets


def _sets(args_sets: list[str], workdir: Path, *more: str) -> list[str]:
    return [*args_sets, f"workdir={workdir}", *more]


def _cfg(config: str, sets: list[str]):
    from configs import load_config, parse_overrides

    return load_config(config, parse_overrides(sets))


def prepare(config: str, sets: list[str]) -> dict[str, str]:
    """ingest -> split -> prompts in the mode's workdir (seconds; the same versions in every workdir)."""
    from augment import stages

    cfg = _cfg(config, sets)
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.prompts(cfg, v)
    return v


def _cli_sets(sets: list[str]) -> list[str]:
    return [x for s in sets for x in ("--set", s)]


# ------------------------------------------------------------------------------------------------ children

def child_bare_and_stage(config: str, sets: list[str], modes: list[str], out: Path) -> None:
    """One engine: LLM.chat on every prompt, then the stage on the same prompts (fresh cache)."""
    from augment import kinds, stages
    from augment.llm import engine as llm_engine
    from augment.llm import generate as gen
    from augment.llm.backend import ChatRequest
    from augment.llm.model_identity import model_id_for

    cfg = _cfg(config, sets)
    v = prepare(config, sets)
    store = stages.store_for(cfg)
    frames = {k: store.read_pandas(kinds.KINDS[k].prompt_table, v[kinds.KINDS[k].prompt_table]) for k in KINDS}
    t0 = time.perf_counter()
    llm = llm_engine.get_engine(cfg.generation.engine)
    result: dict = {"engine_start_s": round(time.perf_counter() - t0, 1), "engine_cores": llm_engine.engine_cores()}
    if "bare" in modes:
        llm.reset_prefix_cache()
        bare = {"seconds": 0.0, "prompts": 0, "output_tokens": 0}
        for kind, frame in frames.items():
            s = gen.sampling_settings(cfg.generation, kind)
            todo = frame.drop_duplicates("prompt_hash")
            todo = todo.assign(_len=todo["messages"].str.len()).sort_values("_len", kind="stable")
            reqs = [ChatRequest(str(i), json.loads(m), max_tokens=s["max_tokens"], temperature=s["temperature"],
                                top_p=s["top_p"], repetition_penalty=s["repetition_penalty"], seed=s["seed"])
                    for i, m in enumerate(todo["messages"])]
            t0 = time.perf_counter()
            res = llm_engine.chat(cfg.generation.engine, reqs)
            bare["seconds"] += time.perf_counter() - t0
            bare["prompts"] += len(res)
            bare["output_tokens"] += sum(r.output_tokens for r in res)
        result["bare"] = bare
    if "stage" in modes:
        llm.reset_prefix_cache()
        stage = {"seconds": 0.0, "prompts": 0, "output_tokens": 0, "retry_output_tokens": 0, "llm_calls": 0,
                 "flags": {}}
        cache = cfg.workdir_path / "stage_cache"
        for kind, frame in frames.items():
            t0 = time.perf_counter()  # the whole call: cache lookup, sort, guard, validation, retries, commits
            st = gen.generate_shard(frame, kind, 0, cfg.generation, cache, model_id_for(cfg.generation),
                                    num_shards=1)
            stage["seconds"] += time.perf_counter() - t0
            stage["prompts"] += st.generated
            for k in ("output_tokens", "retry_output_tokens", "llm_calls"):
                stage[k] += getattr(st, k)
            for f, c in st.flags.items():
                stage["flags"][f] = stage["flags"].get(f, 0) + c
        result["stage"] = stage
    llm_engine.shutdown_engines()
    out.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------ modes

def run_child(mode: str, config: str, sets: list[str], modes: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, "-m", "bench.generation.bench_scale_out", "--child", mode, "--config", config,
           "--modes", ",".join(modes), "--out", str(out), *_cli_sets(sets)]
    subprocess.run(cmd, cwd=REPO, check=True)
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def shard_modes(config: str, sets: list[str], parallel: bool) -> dict:
    """The DAG's four shard processes (2 item + 2 user), one after the other or all at once."""
    from augment import kinds, stage_process

    v = prepare(config, sets)
    jobs = [(kind, shard) for kind in KINDS for shard in (0, 1)]

    def one(job):
        kind, shard = job
        table = kinds.KINDS[kind].prompt_table
        return stage_process.run_stage(["generate", "--config", config, *_cli_sets(sets), "--kind", kind,
                                        "--input", f"{table}={v[table]}", "--shard", str(shard),
                                        "--num-shards", "2"])[0]

    t0 = time.perf_counter()
    if parallel:
        with ThreadPoolExecutor(len(jobs)) as pool:
            shards = list(pool.map(one, jobs))
    else:
        shards = [one(j) for j in jobs]
    wall = time.perf_counter() - t0
    return {"seconds": wall, "prompts": sum(s["generated"] for s in shards),
            "output_tokens": sum(s["output_tokens"] for s in shards),
            "shards": [{k: s.get(k) for k in ("kind", "shard", "generated", "engine_cores", "engine_start_seconds",
                                               "generation_seconds", "output_tokens_per_s", "engine_window")}
                       for s in shards]}


def openai_mode(config: str, sets: list[str], workdir: Path) -> dict:
    """One serve-llm replica (one core), then the stage with backend openai on every prompt (one shard)."""
    from augment import kinds, stage_process

    v = prepare(config, sets)
    port = free_port()
    log = open(workdir / "serve-llm.log", "w")
    t0 = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "augment", "serve-llm", "--config", config, *_cli_sets(sets),
                               "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"serve-llm exited; see {workdir / 'serve-llm.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                time.sleep(1)
        start = time.perf_counter() - t0
        more = ["generation.backend=openai", f"generation.openai.endpoints=[http://127.0.0.1:{port}/v1]"]
        out = {"engine_start_s": round(start, 1), "seconds": 0.0, "prompts": 0, "output_tokens": 0,
               "retry_output_tokens": 0, "flags": {}}
        for kind in KINDS:
            table = kinds.KINDS[kind].prompt_table
            t0 = time.perf_counter()
            st = stage_process.run_stage(["generate", "--config", config, *_cli_sets([*sets, *more]), "--kind",
                                          kind, "--input", f"{table}={v[table]}", "--shard", "0",
                                          "--num-shards", "1"])[0]
            # The child's generation time (its interpreter start and the fleet check excluded, as for `stage`).
            out["seconds"] += st["generation_seconds"]
            out["prompts"] += st["generated"]
            for k in ("output_tokens", "retry_output_tokens"):
                out[k] += st[k]
            for f, c in st["flags"].items():
                out["flags"][f] = out["flags"].get(f, 0) + c
        return out
    finally:
        os.killpg(server.pid, 15)
        server.wait(60)


# ------------------------------------------------------------------------------------------------ report

def _rates(row: dict) -> dict:
    return row | {"prompts_per_s": round(row["prompts"] / row["seconds"], 3),
                  "output_tok_per_s": round(row["output_tokens"] / row["seconds"], 1),
                  "seconds": round(row["seconds"], 1)}


def plot(results: dict, path: Path) -> None:
    """Left: one engine's output tok/s with start-up excluded (bare, stage, openai). Right: the whole generation
    step's prompts/s with start-ups included (sequential vs parallel shards)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results["modes"]
    panels = [([m for m in ("bare", "stage", "openai") if m in r], "output_tok_per_s",
               "one engine, start-up excluded: output tok/s"),
              ([m for m in ("sequential", "parallel") if m in r], "prompts_per_s",
               "4 shard processes, start-ups included: prompts/s")]
    panels = [p for p in panels if p[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    colours = {"bare": "#999", "stage": "#4c72b0", "openai": "#8172b3", "sequential": "#dd8452",
               "parallel": "#55a868"}
    for ax, (modes, key, title) in zip(axes[0], panels):
        bars = ax.bar(modes, [r[m][key] for m in modes], color=[colours[m] for m in modes])
        ax.bar_label(bars, fmt="%.2f")
        ax.set_title(title, fontsize=9)
    prompts = next(iter(r.values()))["prompts"]
    fig.suptitle(f"{Path(results['config']).name}: {prompts} prompts, {results['cores']} cores, "
                 f"{results['dtype']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "ml100k.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--child", choices=["engine"])
    parser.add_argument("--out", default=str(HERE / "results_scale_out.json"))
    parser.add_argument("--keep", action="store_true", help="keep the workdirs (printed)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    modes = [m for m in args.modes.split(",") if m]
    if args.child == "engine":
        child_bare_and_stage(args.config, args.set, modes, Path(args.out))
        return
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise SystemExit(f"--modes: unknown {unknown}; known {list(MODES)}")
    root = Path(tempfile.mkdtemp(prefix="llmfa-bench-scale-out-"))
    from augment.llm.engine import engine_dtype

    args.set = bootstrap_sets(args.config, args.set)
    results: dict = {"config": args.config, "sets": args.set, "cores": len(os.sched_getaffinity(0)),
                     "cpu": platform.processor() or platform.machine(), "load_average_before": os.getloadavg(),
                     "modes": {}, "dtype": engine_dtype(_cfg(args.config, _sets(args.set, root)).generation.engine)}
    print(f"[bench] workdirs under {root}", flush=True)
    try:
        if {"bare", "stage"} & set(modes):
            got = run_child("engine", args.config, _sets(args.set, root / "engine"), modes)
            for m in ("bare", "stage"):
                if m in got:
                    results["modes"][m] = _rates(got[m] | {"engine_start_s": got["engine_start_s"],
                                                           "engine_cores": got["engine_cores"]})
        for m in ("sequential", "parallel"):
            if m in modes:
                results["modes"][m] = _rates(shard_modes(args.config, _sets(args.set, root / m), m == "parallel"))
        if "openai" in modes:
            (root / "openai").mkdir(parents=True, exist_ok=True)
            results["modes"]["openai"] = _rates(openai_mode(args.config, _sets(args.set, root / "openai"),
                                                            root / "openai"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    r = results["modes"]
    ratios = {}
    if "stage" in r and "bare" in r:
        ratios["stage_vs_bare_tok_per_s"] = r["stage"]["output_tok_per_s"] / r["bare"]["output_tok_per_s"]
        ratios["stage_vs_bare_prompts_per_s"] = r["stage"]["prompts_per_s"] / r["bare"]["prompts_per_s"]
    if "parallel" in r and "sequential" in r:
        ratios["parallel_vs_sequential_prompts_per_s"] = r["parallel"]["prompts_per_s"] / r["sequential"][
            "prompts_per_s"]
    if "openai" in r and "stage" in r:
        ratios["openai_vs_stage_tok_per_s"] = r["openai"]["output_tok_per_s"] / r["stage"]["output_tok_per_s"]
        ratios["openai_vs_stage_prompts_per_s"] = r["openai"]["prompts_per_s"] / r["stage"]["prompts_per_s"]
    results["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    results["load_average_after"] = os.getloadavg()
    print(f"\n{'mode':<11} {'seconds':>8} {'prompts':>8} {'prompts/s':>10} {'out tok/s':>10}  engine start / cores")
    for m, row in r.items():
        extra = (f"{row.get('engine_start_s', '')} s, cores {row.get('engine_cores', '')}" if m != "sequential"
                 and m != "parallel" else ", ".join(f"{s['kind']}{s['shard']}@{s['engine_cores']}" for s in row["shards"]))
        print(f"{m:<11} {row['seconds']:>8} {row['prompts']:>8} {row['prompts_per_s']:>10} "
              f"{row['output_tok_per_s']:>10}  {extra}")
    for k, v in results["ratios"].items():
        print(f"{k}: {v:.3f}")
    Path(args.out).write_text(json.dumps(results, indent=1))
    plot(results, Path(args.out).with_name("scale_out.png"))
    print(f"[bench] wrote {args.out} and {Path(args.out).with_name('scale_out.png')}")


if __name__ == "__main__":
    main()
