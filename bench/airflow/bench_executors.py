"""augment_features under LocalExecutor (SQLite) vs CeleryExecutor (Redis broker, Postgres metadata DB, 2 workers,
generation routed to the `llm` queue), side by side in one run, each from a fresh workdir so both generate every
prompt. Each deployment is started and stopped by ops/local_airflow.py on 127.0.0.1; the DAG runs through
`airflow dags test --use-executor`.

    python bench/airflow/bench_executors.py                                  # configs/sample.yaml, 20 users
    python bench/airflow/bench_executors.py --set data.sample_users=60       # the whole quick-look sample
    # -> prints a table, writes bench/airflow/results_executors.json

Prints the wall time of each run (the `dags test` command, and the DAG run's own start..end), the generation
stage's span, and per shard: worker (task instance hostname), prompts generated, the engine's cores and its window
(from holding its cores to its last output, relative to the run's start). On this 2-core machine both executors
run at most two engines at once (each claims a core: augment/llm/cpu_slots.py), so Celery cannot beat LocalExecutor
here: what the figures show is its overhead (broker round trips, a Postgres DB, worker start-up); the gain is
on more machines or GPUs, which a 2-core box cannot show.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from configs import REPO_ROOT, load_config, parse_overrides
from ops.local_airflow import LocalAirflow

MODES = {
    "LocalExecutor": dict(executor="LocalExecutor", database="sqlite"),
    "CeleryExecutor x2": dict(executor="CeleryExecutor", database="postgres", celery_workers=2,
                              extra_env={"LLMFA_LLM_QUEUE": "llm"}),
}


def _config_for(config: str, sets: list[str], workdir: Path, out: Path) -> Path:
    """The benchmark's config as one YAML file (workers read it by path): the overrides applied, a fresh workdir."""
    cfg = load_config(config, parse_overrides([*sets, f"workdir={workdir}"]))
    out.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return out


def _seconds(ti: dict, key: str) -> float:
    return datetime.fromisoformat(ti[key]).timestamp()


def run_mode(name: str, config: str, sets: list[str], root: Path) -> dict:
    mode = dict(MODES[name])
    home = root / name.split()[0] / "airflow"
    cfg_path = _config_for(config, sets, root / name.split()[0] / "work", root / f"{name.split()[0]}.yaml")
    cfg = load_config(cfg_path)
    env = {"LLMFA_TASK_RETRIES": "0", **mode.pop("extra_env", {})}
    logical_date = None
    if cfg.stream is not None:  # a daily config: its bootstrap interval (the DAG's first, from LLMFA_CONFIG)
        logical_date = cfg.stream.start.isoformat()
    airflow = LocalAirflow(home, config_path=cfg_path, services=("api-server",), extra_env=env, **mode)
    try:
        started = time.perf_counter()
        airflow.start()
        airflow.wait_for("the api-server", airflow.healthy, timeout=300, every=1)
        if airflow.celery_workers:
            airflow.wait_for("the Celery workers", airflow.celery_workers_ready, timeout=300, every=1)
        ready = time.perf_counter() - started
        t0 = time.perf_counter()
        code = airflow.dags_test("augment_features", logical_date, conf={"config": str(cfg_path)}, timeout=7200)
        wall = time.perf_counter() - t0
        run = airflow.dag_runs("augment_features")[-1]
        if code != 0 or run["state"] != "success":
            raise SystemExit(f"{name}: augment_features {run['state']} (exit {code}); logs in {home}\n"
                             f"{airflow.task_log_tail('augment_features', run['dag_run_id'])}")
        tis = airflow.task_instances("augment_features", run["dag_run_id"])
    finally:
        airflow.stop()
    run_start = datetime.fromisoformat(run["start_date"]).timestamp()
    run_end = datetime.fromisoformat(run["end_date"]).timestamp()
    stats_dir = (cfg.with_stream_end(cfg.stream.start) if cfg.stream is not None else cfg).stats_path
    hosts = {(ti["task_id"].removeprefix("generate_"), ti["map_index"]): ti["hostname"] for ti in tis
             if ti["task_id"].startswith("generate_")}
    shards = []
    for path in sorted(stats_dir.glob("generate-*.json")):
        s = json.loads(path.read_text())
        if not s.get("generated"):
            continue
        w0, w1 = s["engine_window"]
        shards.append({"kind": s["kind"], "shard": s["shard"], "worker": hosts.get((s["kind"], s["shard"]), "?"),
                       "generated": s["generated"], "cores": s["engine_cores"],
                       "window": [round(w0 - run_start, 1), round(w1 - run_start, 1)]})
    gen = [ti for ti in tis if ti["task_id"].startswith("generate_") and ti["start_date"] and ti["end_date"]]
    span = (max(_seconds(t, "end_date") for t in gen) - min(_seconds(t, "start_date") for t in gen)) if gen else 0.0
    return {"mode": name, "startup_s": round(ready, 1), "dags_test_s": round(wall, 1),
            "dag_run_s": round(run_end - run_start, 1), "generation_span_s": round(span, 1),
            "prompts_generated": sum(s["generated"] for s in shards), "shards": shards}


def overlap(shards: list[dict], kind: str) -> float:
    """Seconds during which two engines of `kind` generated at the same time."""
    w = [s["window"] for s in shards if s["kind"] == kind]
    return round(sum(max(0.0, min(a[1], b[1]) - max(a[0], b[0])) for i, a in enumerate(w) for b in w[i + 1:]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "sample.yaml"))
    parser.add_argument("--set", action="append", default=None, dest="sets", metavar="KEY=VALUE",
                        help="config overrides (default: data.sample_users=20)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_executors.json")))
    args = parser.parse_args()
    sets = args.sets if args.sets is not None else ["data.sample_users=20"]
    root = Path(tempfile.mkdtemp(prefix="llmfa-bench-executors-"))
    results = [run_mode(name, args.config, sets, root) for name in MODES]

    print(f"\naugment_features on {Path(args.config).name} {' '.join(sets)} (fresh workdirs, 2 cores)\n")
    print(f"{'mode':<20}{'start-up s':>11}{'dags test s':>12}{'DAG run s':>10}{'generation s':>13}"
          f"{'prompts':>9}{'item overlap s':>15}{'user overlap s':>15}")
    for r in results:
        print(f"{r['mode']:<20}{r['startup_s']:>11}{r['dags_test_s']:>12}{r['dag_run_s']:>10}"
              f"{r['generation_span_s']:>13}{r['prompts_generated']:>9}{overlap(r['shards'], 'item'):>15}"
              f"{overlap(r['shards'], 'user'):>15}")
    base = results[0]["dag_run_s"]
    for r in results[1:]:
        print(f"\n{r['mode']} / LocalExecutor DAG run time: {r['dag_run_s'] / base:.2f}x")
    for r in results:
        print(f"\n{r['mode']} shards (window: seconds after the DAG run started, from holding the cores to the "
              "last output)")
        for s in r["shards"]:
            print(f"  {s['kind']:<14} shard {s['shard']}  worker {s['worker']:<30} cores {s['cores']:<5} "
                  f"generated {s['generated']:>5}  window {s['window'][0]:>7.1f} .. {s['window'][1]:>7.1f}")
    Path(args.out).write_text(json.dumps({"config": args.config, "sets": sets, "results": results}, indent=1) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
