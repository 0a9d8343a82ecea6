"""Generation bookkeeping with a named fake LLM: sharding, per-prompt cache, resume and skip logic.

The real vLLM path is covered in test_vllm_generation.py (slow)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from augment import generate as gen
from augment import llm_engine
from augment.config import GenerationConfig


class FakeChat:
    """Stands in for llm_engine.chat: echoes the user message length, counts calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, engine, conversations, **kw):
        self.calls.append(len(conversations))
        return [llm_engine.ChatResult(text=f"fake knowledge {len(c[-1]['content'])}", prompt_tokens=10,
                                      output_tokens=kw["max_tokens"], finish_reason="length") for c in conversations]


def _prompts(n: int) -> pd.DataFrame:
    msgs = [json.dumps([{"role": "user", "content": "x" * (i + 1)}]) for i in range(n)]
    return pd.DataFrame({"item_id": range(1, n + 1), "messages": msgs, "template_name": "t",
                         "template_version": "1", "prompt_hash": [f"h{i}" for i in range(n)]})


@pytest.fixture
def fake(monkeypatch) -> FakeChat:
    f = FakeChat()
    monkeypatch.setattr(llm_engine, "chat", f)
    return f


def test_shards_partition_keys_stably():
    keys = pd.Series(range(1000))
    a, b = gen.shard_of(keys, 4), gen.shard_of(keys.sample(frac=1, random_state=0).sort_index(), 4)
    assert (a == b).all()
    assert set(a) == {0, 1, 2, 3}
    assert min(pd.Series(a).value_counts()) > 150


def test_generation_key_depends_on_model_and_sampling():
    base = gen.generation_key("h", "m", {"max_tokens": 8})
    assert base == gen.generation_key("h", "m", {"max_tokens": 8})
    assert base != gen.generation_key("h", "m2", {"max_tokens": 8})
    assert base != gen.generation_key("h", "m", {"max_tokens": 9})


def test_shards_resume_and_skip(tmp_path, fake):
    cfg = GenerationConfig(shards=3)
    prompts = _prompts(30)
    stats = [gen.generate_shard(prompts, "item", s, cfg, tmp_path, "m", batch_size=4) for s in range(3)]
    assert sum(s.generated for s in stats) == 30 and sum(s.skipped for s in stats) == 0
    first_calls = sum(fake.calls)
    again = [gen.generate_shard(prompts, "item", s, cfg, tmp_path, "m", batch_size=4) for s in range(3)]
    assert sum(s.generated for s in again) == 0 and sum(s.skipped for s in again) == 30
    assert sum(fake.calls) == first_calls  # no LLM call when nothing changed

    changed = prompts.copy()
    changed.loc[0, "prompt_hash"] = "new"
    more = [gen.generate_shard(changed, "item", s, cfg, tmp_path, "m", batch_size=4) for s in range(3)]
    assert sum(s.generated for s in more) == 1

    texts = gen.collect_texts(changed, "item", cfg, tmp_path, "m", pd.Series(pd.Timestamp(0, tz="UTC"), index=changed.index))
    assert len(texts) == 30 and texts["text"].str.startswith("fake knowledge").all()
    assert (texts["item_id"].to_numpy() == changed["item_id"].to_numpy()).all()


def test_collect_refuses_missing_outputs(tmp_path, fake):
    cfg = GenerationConfig(shards=2)
    prompts = _prompts(10)
    gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    with pytest.raises(RuntimeError, match="no generated text yet"):
        gen.collect_texts(prompts, "item", cfg, tmp_path, "m", pd.Series(pd.Timestamp(0, tz="UTC"), index=prompts.index))


def test_half_written_cache_file_is_ignored(tmp_path, fake):
    cfg = GenerationConfig(shards=1)
    prompts = _prompts(5)
    (tmp_path / ".tmp-part-crashed.parquet").write_bytes(b"PAR1 half a file")
    stats = gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    assert stats.generated == 5
    assert len(gen.read_cache(tmp_path)) == 5


def test_bad_shard_index(tmp_path, fake):
    with pytest.raises(ValueError, match="out of range"):
        gen.generate_shard(_prompts(3), "item", 5, GenerationConfig(shards=2), tmp_path, "m")
