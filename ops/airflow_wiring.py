"""What the DAG files share: default config path, task defaults, the `llm` pool and queue, the Assets
augment_features emits, and the per-run frozen config. Light at import (stdlib and the Airflow SDK): DAG files
import it at parse time, heavy modules are imported inside the functions tasks call.

    from ops.airflow_wiring import DEFAULT_ARGS, FEATURE_ASSETS, freeze, load, schedule

Environment variables (names, defaults, who sets them): configs/environment.py.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from airflow.sdk import Asset

from augment.kinds import encode_kinds  # stdlib only at import: the registry of kinds, read at parse time
from common.stderr_logging import stderr_relogged
from configs import environment as env

# The default run config: of a run whose `config` param is empty and $LLMFA_CONFIG unset, and of the schedule.
DEFAULT_CONFIG = env.CONFIG.default
# Retries cover transient worker loss in production; tests set LLMFA_TASK_RETRIES=0 so a real failure fails fast.
DEFAULT_ARGS = {"owner": "llm-feature-augmentation", "retries": int(env.TASK_RETRIES.get()),
                "retry_delay": timedelta(seconds=int(env.RETRY_DELAY_S.get()))}
LLM_POOL = "llm"  # one slot per GPU (or per CPU box): generation shards queue here, not on each other's memory
# The executor queue of the generation tasks, a parse-time setting: e.g. LLMFA_LLM_QUEUE=llm under CeleryExecutor
# sends the shards to the GPU workers (`airflow celery worker --queues llm`) and everything else to the default
# queue. Unset: the operator's default queue ([operators] default_queue), so LocalExecutor users see no change.
LLM_QUEUE = env.LLM_QUEUE.get()
LLM_TASK = {"pool": LLM_POOL, **({"queue": LLM_QUEUE} if LLM_QUEUE else {})}  # @task(**LLM_TASK) for GPU steps

# What augment_features publishes and retrain_ctr is scheduled on: the embedding table of every kind that is
# encoded (augment/kinds.py). Each event carries the exact table versions of the run that emitted it
# (extra["versions"]), which is what retrain_ctr trains on.
FEATURE_ASSETS = [Asset(f"llmfa://feature_store/{k.emb_table}") for k in encode_kinds()]
ONE_SHOT_START = "2026-01-01"  # the first interval of a one-shot config's daily runs (each reads the whole log)


@dataclass(frozen=True)
class Schedule:
    """augment_features' data intervals, decided at parse time (a schedule cannot come from a run's `config`
    param): the cron of one interval, the first interval's start, an optional last one, catchup."""

    config: str
    cron: str
    start_date: datetime
    end_date: datetime | None
    catchup: bool


def schedule() -> Schedule:
    """The schedule of $LLMFA_CONFIG (else configs/ml100k.yaml), read when the DAG file is parsed: the cron from
    stream.interval_hours on the grid of stream.start, the first interval the bootstrap one (ending at
    stream.start); a one-shot config runs daily from 2026-01-01. LLMFA_START_DATE / LLMFA_END_DATE /
    LLMFA_CATCHUP choose which intervals the scheduler creates. A run whose config has another interval fails
    in `freeze` (the interval length is checked there)."""
    from configs import load_config
    from configs.run_config import cron_schedule

    env.reject_removed(env.SCHEDULE_REMOVED)
    path = env.CONFIG.get()
    try:
        cfg = load_config(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"augment_features' schedule comes from the run config {path} ($LLMFA_CONFIG, else "
                         f"{DEFAULT_CONFIG}), which does not load: {err}") from err
    if cfg.stream is None:
        cron, first = cron_schedule(), ONE_SHOT_START
    else:
        cron, first = cfg.stream.cron, (cfg.stream.start - cfg.stream.interval).isoformat()
    end = env.END_DATE.get()
    return Schedule(config=path, cron=cron, start_date=_utc(env.START_DATE.get(first)),
                    end_date=_utc(end) if end else None,
                    catchup=env.CATCHUP.get().lower() in ("1", "true", "yes"))


def _utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def timetable(cron: str):
    """Cron intervals with real data intervals: Airflow 3's plain cron schedules run at a point in time and have an
    empty data interval (start == end), which would give every run nothing to process."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    return CronDataIntervalTimetable(cron, timezone="UTC")


def logs_stderr(fn: Callable) -> Callable:
    """Under @task: what the task body writes to stderr (progress bars, warnings) reaches the task log at its own
    level, not at the ERROR level Airflow's supervisor files raw stderr at (common/stderr_logging.py). The
    signature is kept (functools.wraps), so Airflow still passes the context arguments the body names."""
    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        with stderr_relogged(f"{fn.__module__}.{fn.__name__}"):
            return fn(*args, **kwargs)
    return body


def config_path(params: Mapping[str, Any]) -> str:
    """The run's config file: the `config` param, else $LLMFA_CONFIG on the worker, else configs/ml100k.yaml."""
    return params.get("config") or env.CONFIG.get()


def load(config_path: str):
    """Load the run config inside a task (heavy imports stay out of DAG parsing)."""
    from configs import load_config

    return load_config(config_path)


def freeze(config_path: str, data_interval_start: datetime | None = None,
           data_interval_end: datetime | None = None, interval_end: str = "",
           now: datetime | None = None) -> str:
    """Snapshot the resolved config once per DAG run and hand its path to every task.

    Tasks that each re-read the user's YAML would silently mix settings if the file changed mid-run (a shard
    generated with one max_tokens, the publish step looking for another); the snapshot is named by its digest.
    A daily (stream) config gets the run's data interval end as stream.end, so every task of the run works on
    that interval; an interval whose length is not stream.interval_hours is an error (schedule and config differ).

    A manual run (the UI's Trigger button, `airflow dags trigger`) has no data interval in Airflow 3: it processes
    the interval ending at its `interval_end` param (ISO 8601, on the stream grid), else the newest interval
    complete at `now` (stream.latest_end), so the button does something sensible instead of failing in a task.
    """
    from common.files import atomic_write_json

    cfg = load(config_path)
    if cfg.stream is not None and data_interval_end is None:
        if interval_end.strip():
            try:
                end = datetime.fromisoformat(interval_end.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"param interval_end {interval_end!r} is not an ISO 8601 time") from None
        else:
            end = cfg.stream.latest_end(now or datetime.now(timezone.utc))
        cfg = cfg.with_stream_end(end)  # off the grid: a one-line error naming the grid
    elif cfg.stream is not None:
        length = data_interval_end - data_interval_start if data_interval_start is not None else None
        if length != cfg.stream.interval:
            raise ValueError(f"data interval {data_interval_start}..{data_interval_end} is not "
                             f"stream.interval_hours={cfg.stream.interval_hours} long: the run's config "
                             f"({config_path}) and the one the schedule was parsed from ($LLMFA_CONFIG) disagree")
        cfg = cfg.with_stream_end(data_interval_end)
    path = cfg.workdir_path / "run_configs" / f"{cfg.digest()}.json"
    if not path.is_file():
        atomic_write_json(path, cfg.model_dump(mode="json"), sort_keys=True)
    return str(path)


def versions_for_retrain(params: Mapping[str, Any], triggering_asset_events: Mapping | None) -> dict[str, str]:
    """The exact table versions a retrain_ctr run trains on: the `versions` param of a manual run, else those
    carried by the newest asset event that triggered it. Never `latest`: without either it is an error."""
    given = params.get("versions") or {}
    if given:
        return dict(given)
    newest = None
    for events in (triggering_asset_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("versions") and (newest is None or event.timestamp > newest.timestamp):
                newest = event
    if newest is None:
        raise ValueError("retrain_ctr needs exact table versions: run it from augment_features' assets, or trigger "
                         "it with conf {\"versions\": {table: version, ...}}")
    return dict(newest.extra["versions"])


def task_result(dag_run, task_id: str) -> Any:
    """The return value (XCom) of one task of a finished DAG run, read from the metadata DB: how the headless
    runner hands augment_features' versions to retrain_ctr, as the asset event does under a scheduler."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id,
                                                 key="return_value")).first()
        if row is None:
            raise LookupError(f"{dag_run.dag_id} run {dag_run.run_id}: task {task_id} returned nothing")
        return XComModel.deserialize_value(row)
