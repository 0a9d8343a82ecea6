"""augment_features: daily LLM feature augmentation (ingest -> split -> prompts -> vLLM generation -> encoding).

Thin wiring only: every task calls the same typed function as `python -m augment <stage>`. Generation is mapped
over shards and runs in the `llm` pool; the last task emits the feature-table Assets that schedule retrain_ctr.
"""
from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import Param, dag, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_ARGS, DEFAULT_CONFIG, FEATURE_ASSETS, LLM_POOL, REPO_ROOT, load  # noqa: E402

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dag(dag_id="augment_features", schedule="@daily", catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
     params={"config": Param(DEFAULT_CONFIG, type="string", description="run config YAML")},
     tags=["llm", "features"], doc_md=__doc__)
def augment_features():
    @task
    def ingest(params=None) -> dict:
        from augment import stages

        return stages.ingest(load(params["config"]))

    @task
    def split(_upstream: dict, params=None) -> dict:
        from augment import stages

        return stages.split(load(params["config"]))

    @task
    def build_prompts(_upstream: dict, params=None) -> list[int]:
        from augment import stages

        cfg = load(params["config"])
        stages.prompts(cfg)
        return list(range(cfg.generation.shards))

    @task(pool=LLM_POOL, map_index_template="{{ task.op_kwargs['kind'] }} shard {{ task.op_kwargs['shard'] }}")
    def generate(kind: str, shard: int, params=None) -> dict:
        from augment import stages

        return stages.generate(load(params["config"]), kind, shard)[0]

    @task
    def publish_texts(kind: str, _shards: list, params=None) -> str:
        from augment import stages

        return stages.publish_texts(load(params["config"]), kind)

    @task
    def encode(kind: str, _upstream: object = None, params=None) -> str:
        from augment import stages

        return stages.encode(load(params["config"]), kind)

    @task(outlets=FEATURE_ASSETS)
    def publish_features(item: str, user: str, item_raw: str) -> dict:
        """Everything is already versioned in the store; this task marks the run's tables as ready (Assets)."""
        return {"item_knowledge_emb": item, "user_profile_emb": user, "item_raw_emb": item_raw}

    shards = build_prompts(split(ingest()))
    item_text = publish_texts.override(task_id="publish_item_text")(
        "item", generate.override(task_id="generate_item").partial(kind="item").expand(shard=shards))
    user_text = publish_texts.override(task_id="publish_user_text")(
        "user", generate.override(task_id="generate_user").partial(kind="user").expand(shard=shards))
    publish_features(
        encode.override(task_id="encode_item")("item", item_text),
        encode.override(task_id="encode_user")("user", user_text),
        encode.override(task_id="encode_item_raw")("item_raw", shards),
    )


augment_features()
