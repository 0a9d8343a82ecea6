"""The production profile for real: augment_features under CeleryExecutor with a Redis broker, a Postgres metadata
DB and two Celery workers, its generation shards routed to the `llm` queue (LLMFA_LLM_QUEUE), against the same
config under LocalExecutor (SQLite) in another workdir.

Everything runs on 127.0.0.1 and is started and stopped by the test (ops/local_airflow.py): redis-server and a
fresh Postgres cluster (Debian packages, installed by scripts/services.sh), an api-server (the execution API the
task supervisors call) and the workers; `airflow dags test --use-executor` plays the scheduler. Each worker
reports its own name as the task instances' hostname, so the metadata DB says which worker ran each shard.
generation.deterministic (float32) makes the text reproducible, so both runs must publish the same table versions
with the same bytes; batch_size 8 gives both item and user generation two shards that really generate.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from ops.local_airflow import LocalAirflow

BOOTSTRAP_END = "1970-01-30T00:00:00+00:00"  # the tiny stream log's bootstrap interval ends here (conftest.py)
GENERATION = ("generate_item", "generate_user")


def _run(home: Path, config_path: Path, **deployment) -> tuple[str, list[dict], dict]:
    """One augment_features run through `dags test --use-executor`; (run id, task instances, announced
    versions). Every process of the deployment is stopped before this returns, also when it fails."""
    env = {"LLMFA_TASK_RETRIES": "0", "LLMFA_START_DATE": "1970-01-29T00:00:00", **deployment.pop("extra_env", {})}
    airflow = LocalAirflow(home, config_path=config_path, services=("api-server",), extra_env=env, **deployment)
    try:
        airflow.start()
        airflow.wait_for("the api-server", airflow.healthy, timeout=180)
        if airflow.celery_workers:
            airflow.wait_for("both Celery workers", airflow.celery_workers_ready, timeout=180)
        code = airflow.dags_test("augment_features", BOOTSTRAP_END, conf={"config": str(config_path)}, timeout=900)
        runs = airflow.dag_runs("augment_features")
        assert len(runs) == 1, runs
        run_id = runs[0]["dag_run_id"]
        assert code == 0 and runs[0]["state"] == "success", (
            f"exit {code}, {runs[0]['state']}\n{airflow.log_tail('dags-test-augment_features')}\n"
            f"{airflow.task_log_tail('augment_features', run_id)}")
        return run_id, airflow.task_instances("augment_features", run_id), airflow.xcom(
            "augment_features", run_id, "publish_features")
    finally:
        leftovers = airflow.stop()
        assert leftovers == [], f"processes survived the shutdown: {leftovers}"


def _data_digests(workdir: Path, versions: dict) -> dict[str, list[str]]:
    from feature_store import FeatureStore

    store = FeatureStore(workdir / "feature_store")
    return {table: [f["sha256"] for f in store.manifest(table, version)["files"]]
            for table, version in sorted(versions.items())}


@pytest.mark.airflow
@pytest.mark.services
@pytest.mark.vllm
@pytest.mark.timeout(1500)
def test_celery_workers_run_the_shards_and_publish_what_local_executor_publishes(tmp_path, make_tiny_stream_config):
    if "augment.llm.engine" in sys.modules:  # an engine cached by an earlier test holds a core and 3 GiB
        sys.modules["augment.llm.engine"].shutdown_engines()
    celery_cfg = make_tiny_stream_config(tmp_path, **{"generation.deterministic": True,
                                                      "generation.batch_size": 8})
    # The same config (the same data files: the ingest recipe names them) in a second, fresh workdir.
    raw = yaml.safe_load(celery_cfg.read_text())
    local_cfg = tmp_path / "run-local.yaml"
    local_cfg.write_text(yaml.safe_dump({**raw, "workdir": str(tmp_path / "work-local")}))

    run_id, tis, celery_versions = _run(tmp_path / "celery_home", celery_cfg, executor="CeleryExecutor",
                                        database="postgres", celery_workers=2, extra_env={"LLMFA_LLM_QUEUE": "llm"})
    by_task = {}
    for ti in tis:
        by_task.setdefault(ti["task_id"], []).append(ti)
    shards = [ti for task_id in GENERATION for ti in by_task[task_id]]
    assert [len(by_task[t]) for t in GENERATION] == [2, 2], "both kinds should have been cut into two shards"
    # Routing: every generation task went through the llm queue, every other task through the default queue.
    assert {ti["queue"] for t in by_task if t.startswith("generate_") for ti in by_task[t]} == {"llm"}
    assert {ti["queue"] for t in by_task if not t.startswith("generate_") for ti in by_task[t]} == {"default"}
    # Each worker reports its own name as the hostname: the shards ran on both, and nothing ran anywhere else.
    assert {ti["hostname"] for ti in shards} == {"worker-0", "worker-1"}, [(t["task_id"], t["map_index"],
                                                                           t["hostname"]) for t in shards]
    assert {ti["hostname"] for ti in tis if ti["state"] == "success"} <= {"worker-0", "worker-1"}

    from configs import load_config

    cfg = load_config(celery_cfg)
    stats = [json.loads(p.read_text()) for p in sorted(cfg.with_stream_end(cfg.stream.start).stats_path.glob(
        "generate-*.json"))]
    assert sum(s.get("generated", 0) > 0 for s in stats if s.get("kind") in ("item", "user")) == 4, stats

    _, local_tis, local_versions = _run(tmp_path / "local_home", local_cfg, executor="LocalExecutor",
                                        database="sqlite")
    assert {ti["queue"] for ti in local_tis} == {"default"}  # LLMFA_LLM_QUEUE unset: nothing routed
    assert celery_versions == local_versions
    assert _data_digests(Path(raw["workdir"]), celery_versions) == \
        _data_digests(tmp_path / "work-local", local_versions)
