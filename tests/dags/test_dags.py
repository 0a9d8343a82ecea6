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
    assert set(tasks) == {"freeze_config", "ingest", "split", "build_prompts", "generate_item", "generate_user", "publish_item_text",
                          "publish_user_text", "encode_item", "encode_user", "encode_item_raw", "publish_features",
                          "build_structured_prompts", "generate_item_tags", "generate_user_interest",
                          "publish_item_tags", "publish_user_interest"}
    up = {tid: set(t.upstream_task_ids) for tid, t in tasks.items()}
    assert up["ingest"] == {"freeze_config"}
    assert up["split"] == {"freeze_config", "ingest"} and up["build_prompts"] == {"freeze_config", "split"}
    assert up["generate_item"] == {"freeze_config", "build_prompts"}
    assert up["publish_item_text"] == {"freeze_config", "generate_item"}
    assert up["encode_item"] == {"freeze_config", "publish_item_text"}
    assert up["encode_user"] == {"freeze_config", "publish_user_text"}
    assert up["publish_features"] == {"encode_item", "encode_user", "encode_item_raw", "publish_item_tags",
                                      "publish_user_interest"}
    assert up["build_structured_prompts"] == {"freeze_config", "publish_item_text", "publish_user_text"}
    assert up["publish_item_tags"] == {"freeze_config", "generate_item_tags"}
    for tid in ("generate_item", "generate_user", "generate_item_tags", "generate_user_interest"):
        assert tasks[tid].pool == "llm"
        assert type(tasks[tid]).__name__.endswith("MappedOperator")  # .expand over shards
    assert {a.uri for a in tasks["publish_features"].outlets} == {
        "llmfa://feature_store/item_knowledge_emb", "llmfa://feature_store/user_profile_emb",
        "llmfa://feature_store/item_raw_emb"}
    assert all(t.retries >= 0 for t in dag.tasks)


def test_retrain_ctr_is_scheduled_on_feature_assets(dagbag):
    dag = dagbag.dags["retrain_ctr"]
    uris = {a.uri for a in dag.timetable.asset_condition.objects}
    assert uris == {"llmfa://feature_store/item_knowledge_emb", "llmfa://feature_store/user_profile_emb",
                    "llmfa://feature_store/item_raw_emb"}
    assert {t.task_id for t in dag.tasks} >= {"retrain"}


def test_no_heavy_imports_at_parse_time():
    code = f"""
import sys, json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
assert not bag.import_errors, bag.import_errors
heavy = ["vllm", "torch", "lightgbm", "deepctr_torch", "sentence_transformers", "transformers", "duckdb",
         "augment.generate", "models.train_deepfm"]
print(json.dumps([m for m in heavy if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(scope="module")
def migrated_db():
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   env=os.environ.copy(), timeout=300)


@pytest.mark.slow
def test_end_to_end_dag_runs_on_tiny_data(dagbag, migrated_db, tmp_path, make_tiny_config):
    """Real vLLM (CPU), real MiniLM, real Parquet store, real LightGBM + DeepFM, driven by dag.test()."""
    if "augment.llm_engine" in sys.modules:  # an idle engine cached by an earlier test still polls and holds a core
        sys.modules["augment.llm_engine"].shutdown_engines()
    cfg_path = make_tiny_config(tmp_path)
    for dag_id in ("augment_features", "retrain_ctr"):
        run = dagbag.dags[dag_id].test(run_conf={"config": str(cfg_path)})
        assert run.state == "success", f"{dag_id} ended {run.state}"

    from configs import load_config
    from feature_store import FeatureStore

    cfg = load_config(cfg_path)
    store = FeatureStore(cfg.workdir_path / "feature_store")
    text = store.read_pandas("item_knowledge_text")
    assert len(text) == 20 and text["model"].str.startswith("embedded:smollm2").all()
    accepted = text["flag"].isin(["ok", "truncated"])
    assert accepted.sum() >= 15, text["flag"].value_counts()  # a 135M model may fail a few after retries
    assert (text.loc[accepted, "text"].str.strip() != "").all() and (text.loc[~accepted, "text"] == "").all()
    users = store.read_pandas("user_profile_text")
    emb = store.read("user_profile_emb")  # rejected outputs get no vector: the join falls back to the default
    assert emb.num_rows == users["flag"].isin(["ok", "truncated"]).sum() >= 25
    assert emb.schema.field("emb").type.list_size == 384
    report = cfg.workdir_path / "report.md"
    assert report.is_file() and "AUC" in report.read_text()
    manifests = [json.loads(p.read_text()) for p in (cfg.workdir_path / "registry").rglob("manifest.json")]
    assert manifests, "no model manifest in the registry"
    for manifest in manifests:  # every model pins the exact feature-table versions it trained on
        pinned = manifest["feature_tables"]
        assert {"item_knowledge_emb", "user_profile_emb", "item_raw_emb"} <= set(pinned)
        for name, version in pinned.items():
            assert store.manifest(name, version)["version"] == version
    pngs = list((cfg.workdir_path / "reports").glob("*/report.png"))
    assert pngs and pngs[0].stat().st_size > 1000
