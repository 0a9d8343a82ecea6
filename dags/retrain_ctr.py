"""retrain_ctr: rebuild the CTR dataset from the newest feature tables, retrain, evaluate, write the report.

Scheduled on the Assets that augment_features emits, so it runs after every successful augmentation.
The task calls the same function as `python -m models retrain`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import Param, dag, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_ARGS, DEFAULT_CONFIG, FEATURE_ASSETS, REPO_ROOT, freeze, load  # noqa: E402

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dag(dag_id="retrain_ctr", schedule=FEATURE_ASSETS, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
     params={"config": Param(DEFAULT_CONFIG, type="string", description="run config YAML")},
     tags=["ctr", "training"], doc_md=__doc__)
def retrain_ctr():
    @task
    def freeze_config(params=None) -> str:
        return freeze(params["config"])

    @task
    def retrain(config: str) -> dict:
        from models.retrain import retrain as run

        return run(load(config))

    @task
    def announce(result: dict) -> str:
        print(f"report: {result['report']}")
        return result["report"]

    announce(retrain(freeze_config()))


retrain_ctr()
