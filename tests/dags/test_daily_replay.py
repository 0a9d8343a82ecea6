"""The main job's daily replay on tiny data (scripts/run_dags.py --replay: both DAGs with dag.test(), one
augment_features run per data interval, each followed by retrain_ctr on exactly its versions), then the same
replay again: nothing new, so no LLM call, no encode, no training, and the same version of every table.

Real vLLM (CPU), real MiniLM, real Parquet store, real LightGBM. Only a third of the users are active after the
bootstrap, so an interval regenerates exactly their profiles and no item knowledge.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def _replay(cfg_path: Path, n: int) -> tuple[list[dict], str]:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "run_dags.py"), "--config", str(cfg_path),
                           "--replay", str(n)], capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    announced = [json.loads(ln.split(": ", 1)[1]) for ln in done.stdout.splitlines()
                 if ln.startswith("[run_dags] table versions: ")]
    return announced, done.stdout


@pytest.mark.airflow
@pytest.mark.vllm
@pytest.mark.timeout(2400)
def test_daily_replay_regenerates_only_what_changed_and_a_rerun_does_nothing(tmp_path, make_tiny_stream_config):
    if "augment.llm.engine" in sys.modules:  # an idle engine cached by an earlier test still polls and holds a core
        sys.modules["augment.llm.engine"].shutdown_engines()
    cfg_path = make_tiny_stream_config(tmp_path, **{"train.backbones": ["lightgbm"],
                                                    "train.variants": ["base", "raw_text", "llm"],
                                                    "stream.test_intervals": 2})
    from configs import load_config
    from feature_store import FeatureStore

    cfg = load_config(cfg_path)
    # Only users 3, 6, ..., 30 keep rating after the bootstrap (stream.start): 10 active users a day.
    ratings = Path(cfg.data.generic.interactions.path)
    log = pd.read_csv(ratings)
    start_s = int(cfg.stream.start.timestamp())
    log = log[(log["ts"] < start_s) | (log["user"] % 3 == 0)]
    log.to_csv(ratings, index=False)

    announced, out = _replay(cfg_path, 1)
    assert len(announced) == 2
    boot, day1 = announced
    assert boot["item_knowledge_emb"] == day1["item_knowledge_emb"]  # catalogue unchanged: knowledge reused
    assert boot["items"] == day1["items"]
    assert boot["user_profile_emb"] != day1["user_profile_emb"]
    history = pd.DataFrame([json.loads(p.read_text()) for p in sorted((cfg.workdir_path / "history").glob("*.json"))])
    assert history["kind"].tolist() == ["bootstrap", "interval"]
    assert history["items_written"].tolist() == [20, 0]
    assert history["profiles_written"].tolist() == [30, 10]  # a third of the users changed: a third regenerated
    assert history["llm_calls"].tolist() == [50, 10]
    assert history["prompts_total"].tolist() == [50, 60]  # what a full rerun of the interval would send
    for h in history.to_dict(orient="records"):  # every retrain trained on exactly its interval's versions
        run = json.loads((cfg.workdir_path / "registry" / cfg.train.model_name / h["run_id"] / "run.json").read_text())
        versions = announced[0] if h["kind"] == "bootstrap" else announced[1]
        assert all(versions[k] == v for k, v in run["feature_tables"].items())
        assert run["promotion"]["gate_rows"] == "test"  # gated on the window of the newest 2 intervals
        assert run["promotion"]["window"]["intervals"] == 2
        assert run["promotion"]["window"]["rows"] == h["test_rows"]
        assert not run["promotion"]["window"]["champion_trained_on_window"]
    assert history["window_intervals"].tolist() == [2, 2]
    assert history["new_interactions"].tolist()[1] == 10  # the newest interval: 10 active users, one rating each
    assert history["test_rows"].tolist()[1] > 10  # the window spans that interval and the one before
    assert "held out from both models" in (cfg.workdir_path / "report.md").read_text()
    assert history["champion_auc"].isna().tolist() == [True, False]  # day 1: the champion scored on the same rows
    store = FeatureStore(cfg.workdir_path / "feature_store")
    profiles = store.read_pandas("user_profile_text", day1["user_profile_text"])
    assert len(profiles) == 40 and profiles.groupby("user_id").size().max() == 2
    assert (cfg.workdir_path / "history.png").stat().st_size > 1000
    day1_stats = cfg.workdir_path / "stats" / "end=1970-01-31T0000"
    shards = [json.loads(p.read_text()) for p in sorted(day1_stats.glob("generate-user-*.json"))]
    assert [s["num_shards"] for s in shards] == [1]  # 10 new prompts < one batch: one engine start, not two

    again, out = _replay(cfg_path, 1)
    assert again == announced  # identical inputs: identical versions
    for end in ("end=1970-01-30T0000", "end=1970-01-31T0000"):
        stats = {p.stem: json.loads(p.read_text()) for p in (cfg.workdir_path / "stats" / end).glob("*.json")}
        assert sum(s.get("generated", 0) for k, s in stats.items() if k.startswith("generate-")) == 0
        assert all("dim" not in s and not s.get("encoded") for k, s in stats.items() if k.startswith("encode-"))
        assert stats["retrain"]["skipped"].startswith("nothing new since run")
