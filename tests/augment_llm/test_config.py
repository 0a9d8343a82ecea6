"""The run config: unknown keys are rejected, overrides apply, relative workdirs resolve to the repo root."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from configs import REPO_ROOT, load_config


def test_shipped_configs_load():
    shipped = sorted((REPO_ROOT / "configs").glob("*.yaml"))
    assert {"ml100k.yaml", "sample.yaml", "ml-latest-small-overviews.yaml"} <= {p.name for p in shipped}
    for path in shipped:
        cfg = load_config(path)
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


def test_engine_extra_args_pass_through_and_never_shadow_a_typed_field(tmp_path):
    """Rarely used vLLM arguments go through engine.extra_args, verbatim to every engine; a typed field (or an
    argument the project sets itself) there is an error naming it."""
    from augment.llm.generate import output_settings
    from augment.llm.ray_llm import engine_kwargs
    from augment.llm.server import extra_arg_flags

    cfg = load_config(REPO_ROOT / "configs" / "ml100k.yaml",
                      {"generation.engine.extra_args": {"kv_cache_dtype": "fp8", "trust_remote_code": True,
                                                        "swap_space": 0}})
    assert engine_kwargs(cfg.generation)["kv_cache_dtype"] == "fp8"
    assert extra_arg_flags(cfg.generation.engine.extra_args) == ["--kv-cache-dtype", "fp8", "--trust-remote-code",
                                                                  "--swap-space", "0"]
    assert extra_arg_flags({"enable_lora": False}) == ["--no-enable-lora"]
    for taken in ("dtype", "max_model_len", "disable_log_stats", "extra_args"):
        with pytest.raises(ValidationError, match=taken):
            load_config(REPO_ROOT / "configs" / "ml100k.yaml", {"generation.engine.extra_args": {taken: 1}})
    # Existing text versions and cache keys stay: extra_args is in the key only once set.
    plain = load_config(REPO_ROOT / "configs" / "ml100k.yaml")
    assert "extra_args" not in output_settings(plain.generation, "item", "m")["engine"]
    assert output_settings(cfg.generation, "item", "m")["engine"]["extra_args"]["kv_cache_dtype"] == "fp8"


def test_cron_schedule_comes_from_the_stream_interval():
    from datetime import datetime, timezone

    from configs.run_config import cron_schedule

    assert cron_schedule() == "0 0 * * *"  # StreamConfig's default interval, at midnight
    assert cron_schedule(24, datetime(1997, 11, 17, tzinfo=timezone.utc)) == "0 0 * * *"
    assert cron_schedule(6, datetime(2020, 1, 1, 1, 30, tzinfo=timezone.utc)) == "30 1,7,13,19 * * *"
    assert cron_schedule(1) == "0 * * * *"
    with pytest.raises(ValueError, match="divisor of 24"):
        cron_schedule(36)
