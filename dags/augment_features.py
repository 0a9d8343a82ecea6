"""augment_features: daily LLM feature augmentation (ingest -> split -> prompts -> vLLM generation -> encoding).

Thin wiring only: every task calls the same typed function as `python -m augment <stage>`. Generation is mapped
over shards and runs in the `llm` pool, each shard as `python -m augment generate` in its own interpreter (see
augment/stage_process.py for why); the last task emits the feature-table Assets that schedule retrain_ctr.
"""
from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import Param, dag, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_ARGS, DEFAULT_CONFIG, FEATURE_ASSETS, LLM_POOL, REPO_ROOT, freeze, load  # noqa: E402

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dag(dag_id="augment_features", schedule="@daily", catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
     params={"config": Param(DEFAULT_CONFIG, type="string", description="run config YAML")},
     tags=["llm", "features"], doc_md=__doc__)
def augment_features():
    @task
    def freeze_config(params=None) -> str:
        return freeze(params["config"])

    @task
    def ingest(config: str) -> dict:
        from augment import stages

        return stages.ingest(load(config))

    @task
    def split(config: str, _upstream: dict) -> dict:
        from augment import stages

        return stages.split(load(config))

    @task
    def build_prompts(config: str, _upstream: dict) -> list[int]:
        from augment import stages

        cfg = load(config)
        stages.prompts(cfg)
        return list(range(cfg.generation.shards))

    @task(pool=LLM_POOL, map_index_template="{{ task.op_kwargs['kind'] }} shard {{ task.op_kwargs['shard'] }}")
    def generate(config: str, kind: str, shard: int) -> dict:
        # `python -m augment generate` in a child interpreter: a vLLM engine must not start in a task process.
        from augment import stage_process

        return stage_process.generate(config, kind, shard)

    @task
    def publish_texts(config: str, kind: str, _shards: list) -> str:
        from augment import stages

        return stages.publish_texts(load(config), kind)

    @task
    def encode(config: str, kind: str, _upstream: object = None) -> str:
        from augment import stage_process

        return stage_process.encode(config, kind)

    @task
    def build_structured_prompts(config: str, _upstream: object) -> list[int]:
        """ONCE/NoteLLM structured prompts; a no-op unless generation.structured.enabled (shards still listed so
        the mapped tasks after it run and skip, rather than an empty expansion skipping the whole branch)."""
        from augment import stages

        cfg = load(config)
        stages.structured_prompts(cfg)
        return list(range(cfg.generation.shards))

    @task
    def publish_structured(config: str, kind: str, _shards: list) -> dict:
        from augment import stages

        return stages.publish_structured(load(config), kind)

    @task(outlets=FEATURE_ASSETS)
    def publish_features(item: str, user: str, item_raw: str, structured: list) -> dict:
        """Everything is already versioned in the store; this task marks the run's tables as ready (Assets)."""
        return {"item_knowledge_emb": item, "user_profile_emb": user, "item_raw_emb": item_raw,
                "structured": structured}

    config = freeze_config()
    shards = build_prompts(config, split(config, ingest(config)))
    texts = {}
    for kind in ("item", "user"):
        shard_runs = generate.override(task_id=f"generate_{kind}").partial(config=config, kind=kind).expand(shard=shards)
        texts[kind] = publish_texts.override(task_id=f"publish_{kind}_text")(config, kind, shard_runs)
    # Structured generation runs after the KAR texts so they get the llm pool first.
    structured_shards = build_structured_prompts(config, [texts["item"], texts["user"]])
    structured = []
    for kind in ("item_tags", "user_interest"):
        runs = generate.override(task_id=f"generate_{kind}").partial(config=config, kind=kind).expand(
            shard=structured_shards)
        structured.append(publish_structured.override(task_id=f"publish_{kind}")(config, kind, runs))
    publish_features(
        encode.override(task_id="encode_item")(config, "item", texts["item"]),
        encode.override(task_id="encode_user")(config, "user", texts["user"]),
        encode.override(task_id="encode_item_raw")(config, "item_raw", shards),
        structured,
    )


augment_features()
