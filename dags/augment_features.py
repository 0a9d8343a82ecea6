"""augment_features: daily LLM feature augmentation (ingest -> split -> prompts -> vLLM generation -> encoding).

Optionally (behaviour_encoder.enabled) the item encoders are also fine-tuned on training co-occurrence pairs and
re-encode the item knowledge and the raw item text (task behaviour_encoder, after the item text and the split).

Each run processes its data interval: with a `stream` config the log is read as of data_interval_end, profiles are
cut on the interval grid and only what changed is generated and encoded (augment/data/stream_split.py). The schedule
comes from the run config read at parse time ($LLMFA_CONFIG, else configs/ml100k.yaml): one run per
stream.interval_hours on the grid of stream.start, daily for a one-shot config (ops/airflow_wiring.schedule).

Thin wiring only: every task calls the same typed function as `python -m augment <stage>` and hands on what it
returns, the exact versions of the tables it wrote; each task reads exactly the versions it is handed (XCom
carries version ids, never data, and nothing here reads `latest`). Generation is mapped over shards and runs in
the `llm` pool (on the LLMFA_LLM_QUEUE executor queue when that is set), each shard as `python -m augment generate`
in its own interpreter (augment/stage_process.py says why); the last task emits the feature-table Assets, carrying
every version, that schedule retrain_ctr.
"""
from __future__ import annotations

from airflow.sdk import Param, dag, task

from augment.kinds import encode_kinds, structured_kinds, text_kinds  # stdlib only: fine at parse time
from ops.airflow_wiring import (
    DEFAULT_ARGS,
    FEATURE_ASSETS,
    LLM_TASK,
    config_path,
    freeze,
    load,
    logs_stderr,
    schedule,
    timetable,
)

SCHEDULE = schedule()


@dag(dag_id="augment_features", schedule=timetable(SCHEDULE.cron), start_date=SCHEDULE.start_date,
     end_date=SCHEDULE.end_date, catchup=SCHEDULE.catchup,
     max_active_runs=1, default_args=DEFAULT_ARGS,
     params={"config": Param("", type="string",
                             description="run config YAML (empty: $LLMFA_CONFIG on the worker, else ml100k.yaml)"),
             "interval_end": Param("", type="string",
                                   description="daily configs, manual runs only: the end of the interval to process "
                                               "(ISO 8601 on the stream grid, e.g. 1998-04-17T00:00:00Z); empty: "
                                               "the newest complete interval")},
     tags=["llm", "features"], doc_md=__doc__)
def augment_features():
    @task
    @logs_stderr
    def freeze_config(params=None, data_interval_start=None, data_interval_end=None) -> str:
        """The run's config; a daily config gets this run's data interval (stream.end = data_interval_end), a
        manual run (no data interval) its `interval_end` param or the newest complete interval."""
        return freeze(config_path(params), data_interval_start, data_interval_end,
                      str((params or {}).get("interval_end") or ""))

    @task
    @logs_stderr
    def ingest(config: str) -> dict:
        from augment import stages

        return stages.ingest(load(config))

    @task
    @logs_stderr
    def split(config: str, ingested: dict) -> dict:
        from augment import stages

        return stages.split(load(config), ingested)

    @task
    @logs_stderr
    def build_prompts(config: str, ingested: dict, splits: dict) -> dict:
        from augment import stages

        return stages.prompts(load(config), {**ingested, **splits})

    @task
    @logs_stderr
    def plan_shards(config: str, kind: str, prompts: dict) -> list[dict]:
        """generation.shards shards, or one when the run has less than a batch of new prompts (one engine start)."""
        from augment import stages

        return stages.plan_shards(load(config), kind, prompts)

    @task(**LLM_TASK, map_index_template="{{ task.op_kwargs['kind'] }} shard {{ task.op_kwargs['shard'] }}")
    @logs_stderr
    def generate(config: str, kind: str, prompts: dict, shard: int, num_shards: int) -> dict:
        # `python -m augment generate` in a child interpreter: a vLLM engine must not start in a task process.
        from augment import stage_process

        return stage_process.generate(config, kind, prompts, shard, num_shards)

    @task
    @logs_stderr
    def publish_texts(config: str, kind: str, prompts: dict, _shards: list, ingested: dict, splits: dict) -> dict:
        """Collect the shards' text, or import generation.external.<kind> (checked against the pinned items /
        user_cutoffs version, hence those inputs too)."""
        from augment import stages

        return stages.publish_texts(load(config), kind, {**ingested, **splits, **prompts})

    @task
    @logs_stderr
    def encode(config: str, kind: str, source: dict) -> dict:
        from augment import stage_process

        return stage_process.encode(config, kind, source)

    @task
    @logs_stderr
    def behaviour_encoder(config: str, ingested: dict, splits: dict, item_text: dict) -> dict:
        """Behaviour-aligned item encoders (augment/encode/behaviour_encoder.py); a no-op unless behaviour_encoder.enabled.
        In this process, as encode is: sentence-transformers starts no engine."""
        from augment import stages

        return stages.behaviour_encoder(load(config), {**ingested, **splits, **item_text})

    @task
    @logs_stderr
    def build_structured_prompts(config: str, ingested: dict, splits: dict, _after: list) -> dict:
        """ONCE/NoteLLM structured prompts; a no-op unless generation.structured.enabled (the mapped shards still
        run and skip, rather than an empty expansion skipping the whole branch)."""
        from augment import stages

        return stages.structured_prompts(load(config), {**ingested, **splits})

    @task
    @logs_stderr
    def publish_structured(config: str, kind: str, prompts: dict, _shards: list) -> dict:
        from augment import stages

        return stages.publish_structured(load(config), kind, prompts)

    @task(outlets=FEATURE_ASSETS)
    @logs_stderr
    def publish_features(ingested: dict, splits: dict, texts: list[dict], embeddings: list[dict],
                         structured: list[dict], outlet_events=None) -> dict:
        """Everything is already versioned in the store; this task announces the run's exact versions on the
        Assets (retrain_ctr trains on exactly these)."""
        versions = {**ingested, **splits}
        for part in [*texts, *embeddings, *structured]:
            versions.update({k: v for k, v in part.items() if k != "skipped"})
        for asset in FEATURE_ASSETS:  # every event carries the whole, coherent set: one event = one run's tables
            outlet_events[asset].extra = {"versions": versions}
        return versions

    config = freeze_config()
    ingested = ingest(config)
    splits = split(config, ingested)
    prompt_versions = build_prompts(config, ingested, splits)
    # One set of tasks per kind of the registry (augment/kinds.py): task ids name the kind.
    texts = {}
    for kind in (k.name for k in text_kinds()):
        shards = plan_shards.override(task_id=f"plan_{kind}_shards")(config, kind, prompt_versions)
        runs = generate.override(task_id=f"generate_{kind}").partial(
            config=config, kind=kind, prompts=prompt_versions).expand_kwargs(shards)
        texts[kind] = publish_texts.override(task_id=f"publish_{kind}_text")(config, kind, prompt_versions, runs,
                                                                           ingested, splits)
    # Structured generation runs after the KAR texts so they get the llm pool first.
    structured_versions = build_structured_prompts(config, ingested, splits, list(texts.values()))
    structured = []
    for kind in (k.name for k in structured_kinds()):
        shards = plan_shards.override(task_id=f"plan_{kind}_shards")(config, kind, structured_versions)
        runs = generate.override(task_id=f"generate_{kind}").partial(
            config=config, kind=kind, prompts=structured_versions).expand_kwargs(shards)
        structured.append(publish_structured.override(task_id=f"publish_{kind}")(
            config, kind, structured_versions, runs))
    # A kind encodes its own text table, or (item_raw, the no-LLM control) the ingested catalogue.
    embeddings = [encode.override(task_id=f"encode_{k.name}")(config, k.name,
                                                             texts[k.name] if k.generated else ingested)
                  for k in encode_kinds()]
    embeddings.append(behaviour_encoder(config, ingested, splits, texts["item"]))
    publish_features(ingested, splits, list(texts.values()), embeddings, structured)


augment_features()
