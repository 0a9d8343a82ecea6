"""retrain_ctr: rebuild the CTR dataset from the exact feature-table versions an augment_features run announced,
retrain, evaluate, write the report.

Scheduled on the Assets that augment_features emits; their events carry the table versions, so a retrain trains
on what that augmentation wrote, never on whatever is `latest`. A manual run passes them as conf
{"versions": {...}}. The task calls the same function as `python -m models retrain`.
"""
from __future__ import annotations

from airflow.sdk import Param, dag, task

from ops.airflow_wiring import (
    DEFAULT_ARGS,
    FEATURE_ASSETS,
    config_path,
    freeze,
    load,
    logs_stderr,
    versions_for_retrain,
)


@dag(dag_id="retrain_ctr", schedule=FEATURE_ASSETS, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
     params={"config": Param("", type="string",
                             description="run config YAML (empty: $LLMFA_CONFIG on the worker, else ml100k.yaml)"),
             "versions": Param({}, type="object",
                               description="table -> version (empty: the triggering asset events')")},
     tags=["ctr", "training"], doc_md=__doc__)
def retrain_ctr():
    @task
    @logs_stderr
    def freeze_config(params=None) -> str:
        return freeze(config_path(params))

    @task
    @logs_stderr
    def table_versions(params=None, triggering_asset_events=None) -> dict:
        return versions_for_retrain(params, triggering_asset_events)

    @task
    @logs_stderr
    def retrain(config: str, versions: dict) -> dict:
        from models.retrain import retrain as run

        return run(load(config), versions)

    @task
    @logs_stderr
    def announce(result: dict) -> str:
        print(f"report: {result['report']}")
        return result["report"]

    announce(retrain(freeze_config(), table_versions()))


retrain_ctr()
