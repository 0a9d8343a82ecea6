"""Both DAGs under a real Airflow: scheduler, dag-processor and api-server on 127.0.0.1, LocalExecutor, SQLite.

This is the deployment `dag.test()` cannot stand in for: every task runs in its own supervised process with the
environment Airflow's task runner gives it (ORM access blocked), generation shards queue in the real `llm` pool,
and retrain_ctr is started by the scheduler from the Asset events augment_features emits, not by us.
The scheduler itself creates augment_features' runs for two consecutive daily data intervals of a daily (stream)
config (catchup from LLMFA_START_DATE to LLMFA_END_DATE): the bootstrap interval and the first day after it.
The test starts every process itself (ops/local_airflow.py), in its own session, and kills each process tree
at the end.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ops.local_airflow import LocalAirflow

POOL_SLOTS = 2  # two engines side by side: they must end up on disjoint cores


def _finished(airflow: LocalAirflow, dag_id: str, run_id: str) -> dict | None:
    run = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    return run if run["state"] in ("success", "failed") else None


def _seconds(ti: dict) -> float:
    start, end = (datetime.fromisoformat(ti[k]) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


# The tiny stream log's bootstrap ends 1970-01-30 (tests/conftest.py): the scheduler's two intervals end on
# 1970-01-30 (bootstrap) and 1970-01-31 (the first day after it).
INTERVALS = ("1970-01-29T00:00:00", "1970-01-30T00:00:00")


def _run_both_dags(airflow: LocalAirflow) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """Start Airflow, unpause both DAGs, wait for the scheduler's augment_features runs of INTERVALS and the
    retrain_ctr runs their asset events trigger: (augment runs, versions each announced, retrain runs, the
    versions each retrain trained on)."""
    airflow.start()
    airflow.wait_for("the api-server", lambda: airflow.api("GET", "/monitor/health"), timeout=180)
    dags = {d: airflow.wait_for(f"{d} to be parsed", lambda d=d: airflow.api("GET", f"/dags/{d}"), timeout=180)
            for d in ("augment_features", "retrain_ctr")}
    for dag_id in dags:  # from here on the scheduler decides what runs: its intervals, its asset triggers
        airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def augment_runs():
        runs = airflow.api("GET", "/dags/augment_features/dagRuns?order_by=logical_date")["dag_runs"]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(done) == len(INTERVALS) else None

    runs = airflow.wait_for("two augment_features intervals", augment_runs, timeout=1800)
    for run in runs:
        assert run["state"] == "success", airflow.task_log_tail("augment_features", run["dag_run_id"])
    assert [(r["run_type"], r["data_interval_start"][:19], r["data_interval_end"][:10]) for r in runs] == [
        ("scheduled", INTERVALS[0], "1970-01-30"), ("scheduled", INTERVALS[1], "1970-01-31")]
    announced = [airflow.api("GET", f"/dags/augment_features/dagRuns/{r['dag_run_id']}/taskInstances/"
                                    "publish_features/xcomEntries/return_value")["value"] for r in runs]
    announced = [json.loads(a) if isinstance(a, str) else a for a in announced]

    def retrains_done():
        got = airflow.api("GET", "/dags/retrain_ctr/dagRuns")["dag_runs"]
        finished = [r for r in got if r["state"] in ("success", "failed")]
        if not finished or len(finished) < len(got):
            return None
        trained = [airflow.xcom("retrain_ctr", r["dag_run_id"], "table_versions") for r in finished
                   if r["state"] == "success"]
        # Done once the newest interval's versions were trained (an earlier event may share a run with it).
        return (finished, trained) if announced[-1] in trained else None

    retrains, trained = airflow.wait_for("retrain_ctr on the newest interval's asset event", retrains_done,
                                         timeout=900)
    for r in retrains:
        assert r["run_type"] == "asset_triggered"
        assert r["state"] == "success", airflow.task_log_tail("retrain_ctr", r["dag_run_id"])
    # Each retrain trained on exactly one augment run's versions, as its asset event carried them: never a mix.
    assert all(t in announced for t in trained), (trained, announced)
    return runs, announced, retrains, trained


@pytest.mark.airflow
@pytest.mark.vllm
@pytest.mark.timeout(2400)
def test_two_daily_intervals_and_their_retrains_under_a_real_scheduler(tmp_path, make_tiny_stream_config):
    if "augment.llm.engine" in sys.modules:  # an engine cached by an earlier test holds cores and 3 GiB
        sys.modules["augment.llm.engine"].shutdown_engines()
    # batch_size 8: both intervals have more new prompts than one batch, so both shards run (side by side)
    config_path = make_tiny_stream_config(tmp_path, **{"generation.batch_size": 8})
    airflow = LocalAirflow(tmp_path / "airflow_home", config_path=config_path, pools={"llm": POOL_SLOTS},
                           extra_env={"LLMFA_TASK_RETRIES": "0", "LLMFA_START_DATE": INTERVALS[0],
                                      "LLMFA_END_DATE": INTERVALS[1], "LLMFA_CATCHUP": "true"})
    try:
        runs, announced, retrains, trained = _run_both_dags(airflow)
        events = airflow.api("GET", "/assets/events?limit=100")["asset_events"]
        carried = [e["extra"]["versions"] for e in events if e.get("extra", {}).get("versions")]
        assert len(carried) == 3 * len(INTERVALS) and all(c in announced for c in carried)
        # The two intervals: the catalogue kept its versions (item knowledge reused), the profiles did not.
        assert announced[0]["item_knowledge_emb"] == announced[1]["item_knowledge_emb"]
        assert announced[0]["user_profile_emb"] != announced[1]["user_profile_emb"]
        assert len(airflow.api("GET", "/dags/augment_features/dagRuns")["dag_runs"]) == len(INTERVALS)

        tis = {"augment_features": [t for r in runs for t in airflow.task_instances("augment_features",
                                                                                     r["dag_run_id"])]}
        summary = [{"task": t["task_id"], "map_index": t["map_index"], "state": t["state"],
                    "seconds": round(_seconds(t), 1)} for t in tis["augment_features"] if t["start_date"]]
        (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
        assert all(t["state"] in ("success", "skipped") for t in tis["augment_features"])

        # Shards ran as separate processes, each engine pinned to its own cores, two at a time at most (pool).
        from configs import load_config
        from feature_store import FeatureStore

        cfg = load_config(config_path)
        stats = [json.loads(p.read_text()) for p in sorted((cfg.workdir_path / "stats").glob("*/generate-*.json"))]
        kar = [s for s in stats if s.get("kind") in ("item", "user") and s.get("generated")]
        assert len(kar) >= 4, stats
        gen = [t for t in tis["augment_features"] if t["task_id"] in ("generate_item", "generate_user")]
        events_t = sorted([(t["start_date"], 1) for t in gen] + [(t["end_date"], -1) for t in gen])
        running = [sum(step for _, step in events_t[:i + 1]) for i in range(len(events_t))]
        assert max(running) <= POOL_SLOTS, "more generation tasks ran at once than the llm pool has slots"
        side_by_side = 0
        for i, a in enumerate(kar):  # engines alive at the same time must hold disjoint cores
            for b in kar[i + 1:]:
                (a0, a1), (b0, b1) = a["engine_window"], b["engine_window"]
                if a0 < b1 and b0 < a1:
                    side_by_side += 1
                    assert not set(a["engine_cores"].split(",")) & set(b["engine_cores"].split(",")), (a, b)
        print(f"engine pairs side by side: {side_by_side}; cores: {[s['engine_cores'] for s in kar]}")
        if len(os.sched_getaffinity(0)) >= 2:  # two pool slots, two free cores: the first two shards overlap
            assert side_by_side >= 1

        store = FeatureStore(cfg.workdir_path / "feature_store")
        text = store.read_pandas("item_knowledge_text", announced[-1]["item_knowledge_text"])
        assert len(text) == 20 and text["flag"].isin(["ok", "truncated"]).sum() >= 15
        profiles = store.read_pandas("user_profile_text", announced[-1]["user_profile_text"])
        assert profiles.groupby("user_id").size().max() == 2  # the bootstrap profile and the day-one refresh
        manifests = [json.loads(p.read_text()) for p in (cfg.workdir_path / "registry").rglob("manifest.json")]
        assert manifests, "no model in the registry"
        for manifest in manifests:  # every model read one augment run's versions, all of them from that run
            pinned = manifest["feature_tables"]
            assert any(all(a.get(k) == v for k, v in pinned.items()) for a in announced), pinned
        history = (cfg.workdir_path / "history.md").read_text()
        assert "1970-01-31 00:00 | interval" in history
    finally:
        leftovers = airflow.stop()
    assert leftovers == [], f"processes survived the shutdown: {leftovers}"



@pytest.mark.airflow
@pytest.mark.slow  # ~80 s: a real scheduler, dag-processor and api-server for two intervals
@pytest.mark.timeout(1800)
def test_an_implicit_log_with_its_own_item_text_runs_two_daily_intervals_under_a_real_scheduler(
        tmp_path, make_tiny_stream_config):
    """Positives only (clicks), the catalogue's own descriptions as item text and a CRM's user profiles that land
    over time: the production shape of most logs. No LLM runs; sampled negatives are time-correct, so the first
    interval's rows keep their negatives in the second interval's split; a profile written during the second
    interval reaches only that run; the history counts logged rows only."""
    import csv

    import pandas as pd

    descriptions, profiles = tmp_path / "descriptions.csv", tmp_path / "profiles.csv"
    config_path = make_tiny_stream_config(tmp_path, **{
        "data.feedback": "positive_only", "split.negatives": {"per_positive": 2, "seed": 3},
        "generation.external": {"item": {"path": str(descriptions), "source": "catalogue"},
                                "user": {"path": str(profiles), "source": "crm"}},
        "train.backbones": ["lightgbm"], "train.variants": ["base", "llm_item_taste", "llm"],
        "data.generic.interactions.columns": {"user_id": "user", "item_id": "movie", "timestamp": "ts"}})
    from configs import load_config
    from feature_store import FeatureStore

    cfg = load_config(config_path)
    ratings = Path(cfg.data.generic.interactions.path)
    with open(ratings, newline="") as f:  # the well-rated rows become the clicks; an implicit log has no rating
        clicks = [{"user": r["user"], "movie": r["movie"], "ts": r["ts"]} for r in csv.DictReader(f)
                  if int(r["stars"]) >= 4]
    with open(ratings, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["user", "movie", "ts"])
        w.writeheader()
        w.writerows(clicks)
    descriptions.write_text("item_id,text\n" + "".join(
        f"{i},\"A {'loud action-packed' if i % 2 else 'quiet, character-driven'} film, number {i}.\"\n"
        for i in range(1, 21)))
    # every user who clicked before the bootstrap's end has a profile from then (a profile names a known user);
    # three of them get a new one during day one
    start_s = int(cfg.stream.start.timestamp())
    known = sorted({int(c["user"]) for c in clicks if int(c["ts"]) < start_s})
    profiles.write_text("user_id,text,event_timestamp\n" + "".join(
        f"{u},\"Clicks mostly {'loud action' if u % 2 == 0 else 'quiet drama'} titles, user {u}.\","
        f"1970-01-25T00:00:00Z\n" for u in known) + "".join(
        f"{u},\"Lately clicks family comedies too, user {u}.\",1970-01-30T06:00:00Z\n" for u in known[:3]))
    airflow = LocalAirflow(tmp_path / "airflow_home", config_path=config_path, pools={"llm": POOL_SLOTS},
                           extra_env={"LLMFA_TASK_RETRIES": "0", "LLMFA_START_DATE": INTERVALS[0],
                                      "LLMFA_END_DATE": INTERVALS[1], "LLMFA_CATCHUP": "true"})
    try:
        runs, announced, retrains, trained = _run_both_dags(airflow)
    finally:
        leftovers = airflow.stop()
    assert leftovers == [], f"processes survived the shutdown: {leftovers}"
    store = FeatureStore(cfg.workdir_path / "feature_store")
    texts = store.read_pandas("item_knowledge_text", announced[-1]["item_knowledge_text"])
    assert set(texts["model"]) == {"external:catalogue"} and len(texts) == 20
    users = [store.read_pandas("user_profile_text", a["user_profile_text"]) for a in announced]
    assert [len(u) for u in users] == [len(known), len(known) + 3]  # day one's profiles: the second run only
    assert set(users[1]["model"]) == {"external:crm"}
    stats = [json.loads(p.read_text()) for p in (cfg.workdir_path / "stats").glob("*/generate-*.json")]
    assert sum(s.get("generated", 0) for s in stats) == 0  # no LLM call in either interval
    day0, day1 = (store.read_pandas("interaction_splits", a["interaction_splits"]) for a in announced)
    for splits in (day0, day1):
        assert set(splits.loc[splits["sampled"], "label"]) == {0}
        assert set(splits.loc[~splits["sampled"], "label"]) == {1}
        samples = splits[splits["role"] == "sample"]
        assert samples.groupby("split")["label"].nunique().eq(2).all()  # AUC is defined in every split
    cols = ["user_id", "item_id", "timestamp"]
    old = day0.loc[day0["sampled"], cols].reset_index(drop=True)
    kept = day1.loc[day1["sampled"] & (day1["timestamp"] < pd.Timestamp(INTERVALS[1], tz="UTC")), cols]
    pd.testing.assert_frame_equal(old, kept.reset_index(drop=True))  # the new day left old negatives alone
    history = pd.DataFrame([json.loads(p.read_text()) for p in sorted((cfg.workdir_path / "history").glob("*.json"))])
    assert history["kind"].tolist() == ["bootstrap", "interval"]
    new_day = day1[(day1["timestamp"] >= pd.Timestamp(INTERVALS[1], tz="UTC"))]
    assert history["new_interactions"].iloc[1] == int((~new_day["sampled"]).sum()) > 0  # clicks, not negatives
    results = pd.concat(pd.read_parquet(p) for p in (cfg.workdir_path / "registry").rglob("results.parquet"))
    assert {"base", "llm_item_taste", "raw_text_taste", "llm", "raw_text"} <= set(results["variant"])
    assert results["test_auc"].between(0, 1).all()
