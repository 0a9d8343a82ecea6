"""The run config: unknown keys are rejected, overrides apply, relative workdirs resolve to the repo root."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from configs import REPO_ROOT, load_config


def test_shipped_configs_load():
    for name in ("ml100k", "sample", "ml-latest-small"):
        cfg = load_config(REPO_ROOT / "configs" / f"{name}.yaml")
        assert cfg.workdir_path.is_absolute()


def test_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generation:\n  sampling:\n    max_token_item: 5\n")
    with pytest.raises(ValidationError, match="max_token_item"):
        load_config(path)


def test_overrides_and_digest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("workdir: rel/dir\n")
    a = load_config(path)
    b = load_config(path, {"generation.sampling.max_tokens_item": 7})
    assert b.generation.sampling.max_tokens_item == 7
    assert a.digest() != b.digest()
    assert a.workdir_path == (REPO_ROOT / "rel" / "dir").resolve()


def test_deterministic_resolves_float32_and_rejects_half_precision(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generation:\n  deterministic: true\n  engine: {max_num_seqs: 8}\n")
    cfg = load_config(path)
    assert cfg.generation.engine.dtype == "float32" and cfg.generation.engine.max_num_seqs == 8
    # The resolved dtype is what the saved config says: reloading it gives the same config.
    assert type(cfg).model_validate(cfg.model_dump(mode="json")) == cfg
    assert load_config(path, {"generation.deterministic": False}).generation.engine.dtype == "auto"
    with pytest.raises(ValidationError, match="deterministic needs engine.dtype float32"):
        load_config(path, {"generation.engine.dtype": "bfloat16"})
