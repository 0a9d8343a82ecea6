"""Stages through the CLI: bad input exits 2 with one line naming file/row/column and writes nothing."""
from __future__ import annotations

import json
import subprocess
import sys

from configs import REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augment", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)


def test_ingest_split_prompts_cli(tmp_path, make_tiny_config):
    cfg = make_tiny_config(tmp_path)
    for stage in ("ingest", "split", "prompts"):
        out = _run(stage, "--config", str(cfg))
        assert out.returncode == 0, out.stderr[-2000:]
    tables = sorted(p.name for p in (tmp_path / "work" / "feature_store").iterdir() if not p.name.startswith("."))
    assert {"interactions", "items", "users", "interaction_splits", "user_cutoffs", "item_prompts",
            "user_prompts"} <= set(tables)


def test_bad_rating_exits_2_and_writes_nothing(tmp_path, make_tiny_config):
    cfg = make_tiny_config(tmp_path)
    ratings = tmp_path / "data" / "ratings.csv"
    lines = ratings.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 2)[0] + ",lots,1000"
    ratings.write_text("\n".join(lines) + "\n")
    out = _run("ingest", "--config", str(cfg))
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1, out.stderr
    assert "ratings.csv" in err[0] and "line 6" in err[0] and "stars" in err[0]
    store = tmp_path / "work" / "feature_store"
    assert not store.exists() or not any(p for p in store.iterdir() if not p.name.startswith("."))


def test_unknown_config_key_exits_2(tmp_path, make_tiny_config):
    cfg = make_tiny_config(tmp_path, **{"generation.sampling.bogus": 1})
    out = _run("ingest", "--config", str(cfg))
    assert out.returncode == 2 and "bogus" in out.stderr


def test_stages_read_the_versions_they_are_handed_and_reuse_what_exists(tmp_path, make_tiny_config, monkeypatch):
    """A stage reads exactly the input versions it is given (not `latest`), a missing one is an error, and the
    same inputs + settings + code give the same version, reused without recomputing."""
    import pytest

    import augment.data.split as split_module
    from augment import stages
    from configs import load_config

    cfg = load_config(make_tiny_config(tmp_path))
    first = stages.ingest(cfg)
    store = stages.store_for(cfg)
    n_old = len(store.read_pandas("interactions", first["interactions"]))
    ratings = tmp_path / "data" / "ratings.csv"
    ratings.write_text("\n".join(ratings.read_text().splitlines()[:-40]) + "\n")  # new data -> new versions
    second = stages.ingest(cfg)
    assert second["interactions"] != first["interactions"]
    assert store.resolve("interactions") == second["interactions"]  # latest is the new one...

    old = stages.split(cfg, first)  # ...but the stage was handed the old one
    splits = store.read_pandas("interaction_splits", old["interaction_splits"])
    assert len(splits) == n_old
    assert store.manifest("interaction_splits", old["interaction_splits"])["recipe"]["interactions"] == \
        first["interactions"]

    with pytest.raises(ValueError, match=r"no version given for table\(s\) \['interactions'\]"):
        stages.split(cfg, {"items": first["items"]})
    with pytest.raises(ValueError, match="'latest' is not an exact version"):
        stages.split(cfg, {"interactions": "latest"})

    calls = []
    monkeypatch.setattr(split_module, "split_interactions",
                        lambda *a, **k: calls.append(1) or pytest.fail("recomputed an existing version"))
    again = stages.split(cfg, first)
    assert again == old and not calls
    assert json.loads((stages.stats_dir(cfg) / "split.json").read_text())["reused"] == ["interaction_splits",
                                                                                        "user_cutoffs"]


def test_cli_pins_inputs_or_reads_latest_and_says_so(tmp_path, make_tiny_config):
    cfg = make_tiny_config(tmp_path)
    ingest = _run("ingest", "--config", str(cfg))
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    versions = json.loads(ingest.stdout[ingest.stdout.index("{"):])
    pinned = _run("split", "--config", str(cfg), "--input", f"interactions={versions['interactions']}")
    assert pinned.returncode == 0, pinned.stderr[-2000:]
    assert "latest" not in pinned.stderr
    latest = _run("prompts", "--config", str(cfg))
    assert latest.returncode == 0 and "input items: latest = " + versions["items"] in latest.stderr
    wrong = _run("split", "--config", str(cfg), "--input", "items=abc")
    assert wrong.returncode != 0 and "this stage reads ['interactions']" in wrong.stderr


def test_generation_shard_plan_follows_the_new_prompts_and_clears_a_wider_plans_stats(tiny):
    """Fewer new prompts than one batch: one shard (one engine start); a re-run of the interval with a narrower
    plan drops the stats of the shards it no longer runs, so the run's LLM-call count is this run's."""
    from augment import stages

    cfg, v = tiny
    v.update(stages.prompts(cfg, v))
    stats = stages.stats_dir(cfg)
    stats.mkdir(parents=True, exist_ok=True)
    for s in (0, 1):
        (stats / f"generate-user-{s:03d}.json").write_text(json.dumps({"generated": 99}))
    assert stages.plan_shards(cfg, "user", v) == [{"shard": 0, "num_shards": 1}]  # 30 new < batch_size 256
    assert sorted(p.name for p in stats.glob("generate-user-*.json")) == ["generate-user-000.json"]
    wide = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={"batch_size": 8})})
    assert stages.plan_shards(wide, "user", v) == [{"shard": 0, "num_shards": 2}, {"shard": 1, "num_shards": 2}]
