"""Stages run in a child interpreter (how DAG tasks start vLLM): results come back, failures are raised."""
from __future__ import annotations

import pytest

from augment import stage_process


@pytest.mark.timeout(120)
def test_child_stage_returns_its_result_even_under_airflows_blocked_db_url(tiny_config_path, monkeypatch, tmp_path):
    # What Airflow's task runner leaves in the environment; the child must not care (it never imports Airflow).
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    monkeypatch.chdir(tmp_path)  # a worker's cwd is not the repository: the child must still find the code
    versions = stage_process.run_stage(["ingest", "--config", str(tiny_config_path)])
    assert set(versions) == {"interactions", "items", "users", "user_id_map", "item_id_map"} and all(len(v) >= 12 for v in versions.values())


@pytest.mark.timeout(120)
def test_child_failure_is_raised_with_its_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("workdir: x\nno_such_key: 1\n")
    with pytest.raises(stage_process.StageFailed, match=r"ingest failed: bad input \(exit 2\)"):
        stage_process.run_stage(["ingest", "--config", str(bad)])


@pytest.mark.timeout(60)
def test_switched_off_structured_shards_start_no_child(tiny_config_path, monkeypatch):
    monkeypatch.setattr(stage_process, "run_stage", lambda *a, **k: pytest.fail("started a child"))
    assert "skipped" in stage_process.generate(str(tiny_config_path), "item_tags", {}, 0)


@pytest.mark.timeout(120)
def test_user_text_off_skips_every_user_text_stage(tmp_path, make_tiny_config, monkeypatch):
    """generation.user_text: false: no user prompts, no generation child, nothing published or encoded for users;
    the item side is untouched."""
    from augment import stages
    from configs import load_config

    path = make_tiny_config(tmp_path, **{"generation.user_text": False,
                                         "train.variants": ["base", "llm_item_taste"]})
    cfg = load_config(path)
    out = stages.ingest(cfg)
    out.update(stages.split(cfg, out))
    out.update(stages.prompts(cfg, out))
    assert "item_prompts" in out and "user_prompts" not in out
    import json

    mode = json.loads((cfg.stats_path / "prompts.json").read_text())["prompt_mode"]
    assert mode == {"item": {"template": "item_knowledge_v1", "mode": "free recall", "source_text": []}}
    monkeypatch.setattr(stage_process, "run_stage", lambda *a, **k: pytest.fail("started a child"))
    why = "generation.user_text is false"
    assert stage_process.generate(str(path), "user", out, 0) == {"skipped": why}
    assert stages.generate(cfg, "user", out) == [{"skipped": why}]
    assert stages.publish_texts(cfg, "user", out) == {"skipped": why}
    assert stage_process.encode(str(path), "user", out) == {"skipped": why}
    assert cfg.train.run_variants() == ("base", "llm_item_taste", "raw_text_taste")
