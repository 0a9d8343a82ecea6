"""Stages through the CLI: bad input exits 2 with one line naming file/row/column and writes nothing."""
from __future__ import annotations

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
