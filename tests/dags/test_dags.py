"""DAG files: they import cleanly, have the expected shape, stay light at parse time, and run end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
# Every test here runs Airflow (a DagBag parse takes seconds: fast tier); the end-to-end one also loads vLLM.
pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"augment_features", "retrain_ctr"}


def test_augment_features_shape(dagbag):
    dag = dagbag.dags["augment_features"]
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"freeze_config", "ingest", "split", "build_prompts", "generate_item",
                          "generate_user", "publish_item_text", "publish_user_text", "encode_item", "encode_user",
                          "encode_item_raw", "behaviour_encoder", "publish_features", "build_structured_prompts",
                          "generate_item_tags",
                          "generate_user_interest", "publish_item_tags", "publish_user_interest",
                          *(f"plan_{k}_shards" for k in ("item", "user", "item_tags", "user_interest"))}
    # Every edge carries the versions the downstream task reads: it is wired to the task that wrote them.
    up = {tid: set(t.upstream_task_ids) for tid, t in tasks.items()}
    assert up["ingest"] == {"freeze_config"}
    assert up["split"] == {"freeze_config", "ingest"}
    assert up["build_prompts"] == {"freeze_config", "ingest", "split"}
    assert up["generate_item"] == {"freeze_config", "build_prompts", "plan_item_shards"}
    assert up["plan_item_shards"] == {"freeze_config", "build_prompts"}
    # ingest/split: external text (generation.external) is checked against the run's items / user_cutoffs.
    assert up["publish_item_text"] == {"freeze_config", "ingest", "split", "build_prompts", "generate_item"}
    assert up["encode_item"] == {"freeze_config", "publish_item_text"}
    assert up["encode_user"] == {"freeze_config", "publish_user_text"}
    assert up["encode_item_raw"] == {"freeze_config", "ingest"}
    assert up["behaviour_encoder"] == {"freeze_config", "ingest", "split", "publish_item_text"}
    assert up["publish_features"] == {"ingest", "split", "publish_item_text", "publish_user_text", "encode_item",
                                      "encode_user", "encode_item_raw", "behaviour_encoder", "publish_item_tags",
                                      "publish_user_interest"}
    assert up["build_structured_prompts"] == {"freeze_config", "ingest", "split", "publish_item_text",
                                              "publish_user_text"}
    assert up["publish_item_tags"] == {"freeze_config", "build_structured_prompts", "generate_item_tags"}
    for tid in ("generate_item", "generate_user", "generate_item_tags", "generate_user_interest"):
        assert tasks[tid].pool == "llm"
        assert type(tasks[tid]).__name__.endswith("MappedOperator")  # .expand over shards
    # Data intervals: a cron schedule with real intervals (Airflow 3's plain cron has start == end).
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert {a.uri for a in tasks["publish_features"].outlets} == {
        "llmfa://feature_store/item_knowledge_emb", "llmfa://feature_store/user_profile_emb",
        "llmfa://feature_store/item_raw_emb"}


def test_task_retries_come_from_the_environment_of_the_parsing_process():
    """Production parses with LLMFA_TASK_RETRIES unset (2 retries), tests with 0: every task must get it."""
    code = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
print(json.dumps({{d: sorted({{t.retries for t in dag.tasks}}) for d, dag in bag.dags.items()}}))
"""
    for env_value, expected in (("3", [3]), (None, [2])):
        env = {k: v for k, v in os.environ.items() if k != "LLMFA_TASK_RETRIES"}
        if env_value is not None:
            env["LLMFA_TASK_RETRIES"] = env_value
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got == {"augment_features": expected, "retrain_ctr": expected}


def test_generation_queue_comes_from_the_environment_of_the_parsing_process():
    """LLMFA_LLM_QUEUE routes the generation shards (and nothing else) to that executor queue; unset, every task
    keeps Airflow's default queue, so a LocalExecutor deployment sees no change. The llm pool stays either way."""
    code = f"""
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={str(DAGS)!r}).dags["augment_features"]
print(json.dumps({{t.task_id: [t.queue, t.pool] for t in dag.tasks}}))
"""
    generation = {"generate_item", "generate_user", "generate_item_tags", "generate_user_interest"}
    for env_value, queue in (("llm", "llm"), (None, "default")):
        env = {k: v for k, v in os.environ.items() if k != "LLMFA_LLM_QUEUE"}
        if env_value is not None:
            env["LLMFA_LLM_QUEUE"] = env_value
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert {tid: qp for tid, qp in got.items() if tid in generation} == {t: [queue, "llm"] for t in generation}
        assert {q for tid, (q, _) in got.items() if tid not in generation} == {"default"}


def test_retrain_ctr_is_scheduled_on_feature_assets(dagbag):
    dag = dagbag.dags["retrain_ctr"]
    uris = {a.uri for a in dag.timetable.asset_condition.objects}
    assert uris == {"llmfa://feature_store/item_knowledge_emb", "llmfa://feature_store/user_profile_emb",
                    "llmfa://feature_store/item_raw_emb"}
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"freeze_config", "table_versions", "retrain", "announce"}
    assert set(tasks["retrain"].upstream_task_ids) == {"freeze_config", "table_versions"}


def test_retrain_trains_on_the_versions_it_was_handed():
    """A manual run's conf wins; otherwise the newest triggering asset event's versions; never `latest`."""
    from datetime import datetime, timezone

    from ops.airflow_wiring import versions_for_retrain

    class FakeEvent:  # the two fields of Airflow's AssetEventDagRunReferenceResult that we read
        def __init__(self, day: int, versions: dict | None):
            self.timestamp = datetime(2026, 12, day, tzinfo=timezone.utc)
            self.extra = {"versions": versions} if versions else {}

    events = {"a": [FakeEvent(1, {"items": "old"}), FakeEvent(3, {"items": "new"})], "b": [FakeEvent(4, None)]}
    assert versions_for_retrain({"versions": {"items": "pinned"}}, events) == {"items": "pinned"}
    assert versions_for_retrain({"versions": {}}, events) == {"items": "new"}
    with pytest.raises(ValueError, match="needs exact table versions"):
        versions_for_retrain({}, {"b": [FakeEvent(4, None)]})
    with pytest.raises(ValueError, match="needs exact table versions"):
        versions_for_retrain({}, None)


def test_no_heavy_imports_at_parse_time():
    code = f"""
import sys, json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
assert not bag.import_errors, bag.import_errors
heavy = ["vllm", "torch", "lightgbm", "deepctr_torch", "sentence_transformers", "transformers", "duckdb",
         "augment.llm.generate", "models.train_deepctr", "pandas", "pyarrow"]
print(json.dumps([m for m in heavy if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.vllm
@pytest.mark.timeout(1800)
def test_end_to_end_dag_runs_on_tiny_data(tmp_path, make_tiny_config):
    """The main job's own runner (scripts/run_dags.py: both DAGs with dag.test() on a fresh SQLite DB) on tiny data:
    real vLLM (CPU), real MiniLM, real Parquet store, real LightGBM + DeepFM; retrain_ctr gets exactly the
    versions augment_features announced."""
    if "augment.llm.engine" in sys.modules:  # an idle engine cached by an earlier test still polls and holds a core
        sys.modules["augment.llm.engine"].shutdown_engines()
    cfg_path = make_tiny_config(tmp_path)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "run_dags.py"), "--config", str(cfg_path)],
                          capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("[run_dags] table versions: "))
    announced = json.loads(line.split(": ", 1)[1])
    assert "[run_dags] augment_features: success" in done.stdout and "[run_dags] retrain_ctr: success" in done.stdout

    from configs import load_config
    from feature_store import FeatureStore

    cfg = load_config(cfg_path)
    store = FeatureStore(cfg.workdir_path / "feature_store")
    text = store.read_pandas("item_knowledge_text", announced["item_knowledge_text"])
    assert len(text) == 20 and text["model"].str.startswith("embedded:smollm2").all()
    accepted = text["flag"].isin(["ok", "truncated"])
    assert accepted.sum() >= 15, text["flag"].value_counts()  # a 135M model may fail a few after retries
    assert (text.loc[accepted, "text"].str.strip() != "").all() and (text.loc[~accepted, "text"] == "").all()
    users = store.read_pandas("user_profile_text", announced["user_profile_text"])
    emb = store.read("user_profile_emb", announced["user_profile_emb"])  # rejected outputs get no vector: the join falls back to the default
    assert emb.num_rows == users["flag"].isin(["ok", "truncated"]).sum() >= 25
    assert emb.schema.field("emb").type.list_size == 384
    report = cfg.workdir_path / "report.md"
    assert report.is_file() and "AUC" in report.read_text()
    manifests = [json.loads(p.read_text()) for p in (cfg.workdir_path / "registry").rglob("manifest.json")]
    assert manifests, "no model manifest in the registry"
    for manifest in manifests:  # every model pins exactly the versions augment_features announced
        pinned = manifest["feature_tables"]
        assert {"item_knowledge_emb", "user_profile_emb", "item_raw_emb"} <= set(pinned)
        for name, version in pinned.items():
            assert version == announced[name] and store.manifest(name, version)["version"] == version
    pngs = list((cfg.workdir_path / "reports").glob("*/report.png"))
    assert pngs and pngs[0].stat().st_size > 1000


@pytest.mark.timeout(60)
def test_freeze_gives_a_daily_config_its_data_interval(tmp_path, make_tiny_stream_config):
    """The run's data interval becomes stream.end of its frozen config; a schedule that disagrees with
    stream.interval_hours is an error, not a silently different interval."""
    from datetime import datetime, timezone

    from configs import load_config
    from ops.airflow_wiring import freeze

    path = str(make_tiny_stream_config(tmp_path))
    end = datetime(1970, 1, 31, tzinfo=timezone.utc)
    frozen = load_config(freeze(path, datetime(1970, 1, 30, tzinfo=timezone.utc), end))
    assert frozen.stream.end == end and frozen.stream.run_kind == "interval"
    assert frozen.stats_path.name == "end=1970-01-31T0000"
    with pytest.raises(ValueError, match="not stream.interval_hours=24 long"):
        freeze(path, datetime(1970, 1, 29, tzinfo=timezone.utc), end)
    with pytest.raises(ValueError, match="not on the interval grid"):
        freeze(path, datetime(1970, 1, 30, 12, tzinfo=timezone.utc), datetime(1970, 1, 31, 12, tzinfo=timezone.utc))



@pytest.mark.timeout(60)
def test_a_manual_run_processes_a_sensible_interval(tmp_path, make_tiny_stream_config):
    """Airflow 3 gives a manual run (the Trigger button) no data interval: it takes its interval_end param, else
    the newest interval complete now; a param off the grid or unreadable, or a time before the bootstrap
    interval ends, is a one-line error at the first task (not 'stream.end is not set' two minutes later)."""
    from datetime import datetime, timezone

    from configs import load_config
    from ops.airflow_wiring import freeze

    path = str(make_tiny_stream_config(tmp_path))  # stream.start 1970-01-30, daily
    now = datetime(1970, 2, 3, 17, 5, tzinfo=timezone.utc)
    assert load_config(freeze(path, now=now)).stream.end == datetime(1970, 2, 3, tzinfo=timezone.utc)
    at_start = load_config(freeze(path, now=datetime(1970, 1, 30, 0, 0, tzinfo=timezone.utc)))
    assert at_start.stream.run_kind == "bootstrap"
    chosen = load_config(freeze(path, interval_end="1970-02-01T00:00:00Z", now=now))
    assert chosen.stream.end == datetime(1970, 2, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="not on the interval grid"):
        freeze(path, interval_end="1970-02-01T06:00:00Z")
    with pytest.raises(ValueError, match="param interval_end 'yesterday' is not an ISO 8601 time"):
        freeze(path, interval_end="yesterday")
    with pytest.raises(ValueError, match="no interval is complete yet"):
        freeze(path, now=datetime(1970, 1, 29, tzinfo=timezone.utc))


def test_schedule_comes_from_the_parse_time_config(tmp_path, monkeypatch):
    """augment_features' cron and first interval are the config's (stream.interval_hours on the grid of
    stream.start); a one-shot config runs daily; the removed LLMFA_SCHEDULE is an error, not silently ignored."""
    import yaml

    from ops.airflow_wiring import schedule

    for name in ("LLMFA_SCHEDULE", "LLMFA_START_DATE", "LLMFA_END_DATE", "LLMFA_CATCHUP"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "daily.yaml"
    path.write_text(yaml.safe_dump({"data": {"id_types": {"user": "int", "item": "int"}},
                                    "stream": {"start": "1997-11-17T06:00:00Z", "interval_hours": 12}}))
    monkeypatch.setenv("LLMFA_CONFIG", str(path))
    got = schedule()
    assert (got.cron, got.start_date.isoformat(), got.end_date, got.catchup) == (
        "0 6,18 * * *", "1997-11-16T18:00:00+00:00", None, False)
    monkeypatch.setenv("LLMFA_START_DATE", "1997-11-17T06:00")
    monkeypatch.setenv("LLMFA_CATCHUP", "true")
    assert schedule().start_date.isoformat() == "1997-11-17T06:00:00+00:00" and schedule().catchup
    monkeypatch.setenv("LLMFA_CONFIG", str(REPO / "configs" / "sample.yaml"))  # one-shot
    assert schedule().cron == "0 0 * * *"
    monkeypatch.setenv("LLMFA_SCHEDULE", "0 0 * * *")
    with pytest.raises(ValueError, match="LLMFA_SCHEDULE is no longer read"):
        schedule()
