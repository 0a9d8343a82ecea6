"""Run the real Airflow DAGs headless: augment_features, then retrain_ctr, each with `dag.test(use_executor=True)`
on a local SQLite metadata DB, through the LocalExecutor (parallelism 4) and an api-server on 127.0.0.1 (a free
port) that this runner starts before the first run and stops after the last (ops/local_airflow.py). Each task
runs in its own supervised process, so the mapped generation shards run side by side: each shard's engine claims
its own core (augment/llm/cpu_slots.py) and a third engine waits for one. This is what the README's main-job command
runs (inside the project environment).

    python scripts/run_dags.py --config configs/ml100k.yaml      # full MovieLens-100K
    python scripts/run_dags.py --config configs/sample.yaml      # a quick look (60 users)

`dag.test()` ignores pools (the executor's parallelism bounds the tasks at once) and does not fire Asset-scheduled
DAGs, so retrain_ctr (scheduled on augment_features' Assets in a real deployment) is run explicitly after
augment_features succeeds, with the exact table versions that run announced (what the asset event carries under a
scheduler). Exit code 1 if any DAG run fails.

With a daily (`stream`) config the job replays the log as a stream: a bootstrap run whose data interval ends at
stream.start (everything before it), then `--replay N` runs, one per interval after it (default 3), each
augment_features run followed by the retrain_ctr run on exactly its versions; it ends with the history table
(<workdir>/history.md, history.png) and the wall time of every run (<workdir>/replay.json).

    python scripts/run_dags.py --config configs/ml100k.yaml --replay 3
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REPLAY = 3  # stream configs: intervals replayed after the bootstrap run


def deployment(cfg, settings: dict[str, str]):
    """The runner's Airflow: the metadata DB and logs under <workdir>/airflow (kept between runs), LocalExecutor,
    an api-server for the task supervisors' execution API; a user's own AIRFLOW__* settings are kept where we
    set nothing."""
    from ops.local_airflow import LocalAirflow

    return LocalAirflow(cfg.workdir_path / "airflow", executor="LocalExecutor", database="sqlite",
                        services=("api-server",), parallelism=4, inherit_airflow_env=True, extra_env={
                            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                            "HF_HUB_OFFLINE": "1",
                            "TRANSFORMERS_OFFLINE": "1",
                            # for vLLM's pooling encoder; each generation engine sizes its own from the config
                            "VLLM_CPU_KVCACHE_SPACE": os.environ.get(
                                "VLLM_CPU_KVCACHE_SPACE", str(cfg.generation.engine.cpu_kvcache_space_gib)),
                            **settings})


def run_dag(dag_id: str, conf: dict, logical_date: datetime | None = None) -> tuple[object, float]:
    from airflow.dag_processing.dagbag import DagBag

    from ops.local_airflow import quiet_dag_test_polling

    quiet_dag_test_polling()

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{dag_id}.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    started = time.perf_counter()
    # A cron-interval DAG run at logical date T covers the interval that ends at T.
    run = bag.dags[dag_id].test(run_conf=conf, use_executor=True,
                                **({"logical_date": logical_date} if logical_date else {}))
    seconds = time.perf_counter() - started
    print(f"[run_dags] {dag_id}: {run.state} in {seconds:.0f} s", flush=True)
    return run, seconds


def stop_engines() -> None:
    """vLLM's engine core is a live child process that would keep this interpreter from exiting."""
    engine = sys.modules.get("augment.llm.engine")
    if engine is not None:
        engine.shutdown_engines()


def print_costs(cfg, walls: list[dict]) -> None:
    """Each run's wall time (both DAGs) beside the first (bootstrap, full) run's, and what it did, from the stage
    stats this run wrote: LLM calls beside the prompts a full rerun would send, texts encoded, models trained."""
    from common.stage_stats import read_stats

    full = None
    for row in walls:
        wall = row["augment_features_seconds"] + row["retrain_ctr_seconds"]
        full = wall if full is None else full
        stats = read_stats(cfg.with_stream_end(datetime.fromisoformat(row["end"])).stats_path)
        gen = [s for k, s in stats.items() if k.startswith("generate-")]
        calls, prompts = sum(s.get("generated", 0) for s in gen), sum(s.get("prompts", 0) for s in gen)
        encoded = sum(s.get("encoded", 0) for k, s in stats.items() if k.startswith("encode-"))
        retrain = stats.get("retrain", {})
        trained = "none (" + retrain["skipped"] + ")" if retrain.get("skipped") else "yes"
        print(f"[run_dags] {row['end']}: augment_features {row['augment_features_seconds']} s + retrain_ctr "
              f"{row['retrain_ctr_seconds']} s = {wall:.0f} s ({100 * wall / full:.1f}% of the first run); "
              f"LLM calls {calls} of {prompts} prompts; texts encoded {encoded}; training {trained}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="run config (default: what the DAGs default to, "
                        "$LLMFA_CONFIG else configs/ml100k.yaml)")
    parser.add_argument("--replay", type=int, default=None,
                        help=f"stream configs: intervals to replay after the bootstrap run (default {REPLAY})")
    parser.add_argument("--generation-variance", type=int, default=0, metavar="K",
                        help="one-shot configs: between the two DAGs, regenerate 60 item prompts under K sampling "
                             "seeds (python -m augment generation-variance) so the report shows the text's own "
                             "run-to-run spread next to the training seeds'")
    args = parser.parse_args()
    from configs import environment as env

    config = str(Path(args.config or env.CONFIG.get()).resolve())
    from configs import load_config  # light: must not import Airflow before AIRFLOW_HOME is set below

    cfg = load_config(config)  # fail fast on a bad config, before Airflow starts
    # The DAG files derive augment_features' schedule (cron, first interval) from this config at parse time.
    extra = {env.CONFIG.name: config}
    ends: list[datetime | None] = [None]  # one run over the whole log
    if cfg.stream is not None:
        try:
            cfg.stream.cron  # noqa: B018 (fail here, not in the DAG import)
        except ValueError as err:
            raise SystemExit(str(err)) from None
        replay = REPLAY if args.replay is None else args.replay
        ends = [cfg.stream.start + k * cfg.stream.interval for k in range(replay + 1)]
    elif args.replay:
        raise SystemExit("--replay needs a config with a stream section")
    if args.generation_variance and cfg.stream is not None:
        raise SystemExit("--generation-variance: one-shot configs only (a daily run's report has its own stats)")
    if "airflow" in sys.modules:
        raise RuntimeError("Airflow was imported before AIRFLOW_HOME was set: it would use the wrong metadata DB")
    airflow = deployment(cfg, extra)
    os.environ.update(airflow.settings)  # this process runs dag.test(): the same settings as the api-server
    try:
        airflow.start()  # db migrate, the llm pool, the api-server
        airflow.wait_for("the api-server", airflow.healthy, timeout=300, every=1)
        return run_all(args, cfg, config, ends, airflow.settings["AIRFLOW_HOME"])
    finally:
        stop_engines()
        leftovers = airflow.stop()
        # dag.test(use_executor=True) leaves the LocalExecutor's worker processes running when a run fails or
        # raises; the interpreter would wait for them at exit for ever (seen: a failed replay hung until its
        # test's timeout). They hold no work of ours by now.
        for worker in multiprocessing.active_children():
            worker.terminate()
            worker.join(10)
        if leftovers:
            print(f"[run_dags] warning: processes survived the shutdown: {leftovers}", file=sys.stderr)


def run_all(args, cfg, config: str, ends: list[datetime | None], airflow_home: str) -> int:
    """Every augment_features run (one, or bootstrap + replay), each followed by retrain_ctr on its versions."""
    from ops.airflow_wiring import task_result

    walls = []
    for end in ends:
        conf: dict = {"config": config}
        if end is not None:
            print(f"\n[run_dags] interval ending {end.isoformat()}", flush=True)
        row = {"end": end.isoformat() if end else None}
        for dag_id in ("augment_features", "retrain_ctr"):
            run, seconds = run_dag(dag_id, conf, logical_date=end if dag_id == "augment_features" else None)
            row[f"{dag_id}_seconds"] = round(seconds, 1)
            if str(run.state) != "success":
                print(f"[run_dags] {dag_id} failed; task logs are under {airflow_home}/logs", file=sys.stderr)
                return 1
            stop_engines()  # an idle engine core still polls (~10% CPU) and holds ~3 GiB during training
            if dag_id == "augment_features":
                conf["versions"] = task_result(run, "publish_features")
                print(f"[run_dags] table versions: {json.dumps(conf['versions'], sort_keys=True)}", flush=True)
                if args.generation_variance:
                    subprocess.run([sys.executable, "-m", "augment", "generation-variance", "--config", config,
                                    "--input", f"item_prompts={task_result(run, 'build_prompts')['item_prompts']}",
                                    "--seeds", str(args.generation_variance)], check=True)
        walls.append(row)
    report = cfg.workdir_path / "report.md"
    print(f"\n[run_dags] done. Report: {report}\n", flush=True)
    print(report.read_text().split("\n## ")[0], flush=True)
    if cfg.stream is not None:
        from common.files import atomic_write_json

        atomic_write_json(cfg.workdir_path / "replay.json", walls)
        print(f"[run_dags] daily history ({cfg.workdir_path / 'history.md'}, history.png):\n", flush=True)
        print((cfg.workdir_path / "history.md").read_text(), flush=True)
        print_costs(cfg, walls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
