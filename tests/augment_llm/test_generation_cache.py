"""Generation bookkeeping with a named fake LLM: sharding, per-prompt cache, resume and skip logic.

The real vLLM path is covered in test_vllm_generation.py (slow)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from augment import generate as gen
from augment import llm_engine
from configs import GenerationConfig


class FakeChat:
    """Stands in for llm_engine.chat: echoes the user message length, counts calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, engine, conversations, **kw):
        self.calls.append(len(conversations))
        return [llm_engine.ChatResult(text=f"fake knowledge about a prompt of {len(c[-1]['content'])} characters",
                                      prompt_tokens=10, output_tokens=kw["max_tokens"], finish_reason="length")
                for c in conversations]


def _prompts(n: int) -> pd.DataFrame:
    msgs = [json.dumps([{"role": "user", "content": "x" * (i + 1)}]) for i in range(n)]
    return pd.DataFrame({"item_id": range(1, n + 1), "messages": msgs, "template_name": "t",
                         "template_version": "1", "prompt_hash": [f"h{i}" for i in range(n)]})


@pytest.fixture
def fake(monkeypatch) -> FakeChat:
    f = FakeChat()
    monkeypatch.setattr(llm_engine, "chat", f)
    monkeypatch.setattr(llm_engine, "chat_prompt_tokens", lambda engine, convs: [10] * len(convs))
    monkeypatch.setattr(llm_engine, "get_engine", lambda engine: f)
    return f


def test_shards_partition_keys_stably():
    keys = pd.Series(range(1000))
    a, b = gen.shard_of(keys, 4), gen.shard_of(keys.sample(frac=1, random_state=0).sort_index(), 4)
    assert (a == b).all()
    assert set(a) == {0, 1, 2, 3}
    assert min(pd.Series(a).value_counts()) > 150


def test_generation_key_covers_every_output_setting_and_nothing_else():
    """The cache key and the text table's recipe come from one dict (output_settings): what changes the text
    changes the key; what only changes speed does not."""
    base_cfg = GenerationConfig()

    def key(cfg: GenerationConfig, model: str = "m", prompt: str = "h") -> str:
        return gen.generation_key(prompt, gen.output_settings(cfg, "item", model))

    base = key(base_cfg)
    assert base == key(GenerationConfig())
    assert base != key(base_cfg, model="m2") and base != key(base_cfg, prompt="h2")
    changes_text = [{"engine": {"dtype": "float32"}}, {"engine": {"max_model_len": 1024}},
                    {"engine": {"enforce_eager": False}}, {"engine": {"seed": 1}},
                    {"engine": {"tensor_parallel_size": 2}}, {"sampling": {"max_tokens_item": 7}},
                    {"sampling": {"temperature": 0.3}}, {"validation": {"max_attempts": 1}},
                    {"validation": {"min_chars": 5}}]
    speed_only = [{"engine": {"max_num_seqs": 4}}, {"engine": {"cpu_threads": 2}},
                  {"engine": {"cpu_kvcache_space_gib": 3}}, {"engine": {"enable_prefix_caching": False}},
                  {"engine": {"enable_chunked_prefill": True}}, {"engine": {"data_parallel_size": 2}},
                  {"batch_size": 7}, {"shards": 5}]
    for change in changes_text:
        assert key(GenerationConfig.model_validate(change)) != base, change
    for change in speed_only:
        assert key(GenerationConfig.model_validate(change)) == base, change


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
    assert (texts["flag"] == "truncated").all() and (texts["attempts"] == 1).all()
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


class ScriptedFakeChat:
    """A fake LLM whose answer for a prompt depends on the attempt's seed: bad first, good on a later seed."""

    def __init__(self, good_from_attempt: dict[str, int]) -> None:
        self.good_from = good_from_attempt  # user content -> first attempt (1-based) that returns good text
        self.seen: list[tuple[str, int, float]] = []

    def __call__(self, engine, conversations, **kw):
        attempt = 1 + kw["seed"] // 1000
        out = []
        for c in conversations:
            content = c[-1]["content"]
            self.seen.append((content, kw["seed"], kw["temperature"]))
            good = attempt >= self.good_from.get(content, 1)
            text = f"A detailed and valid description of {content}." if good else "I'm sorry, I cannot help."
            out.append(llm_engine.ChatResult(text, 10, 12, "stop"))
        return out


def test_rejected_outputs_are_retried_with_new_seed_then_flagged(tmp_path, monkeypatch):
    prompts = _prompts(4)  # contents "x", "xx", "xxx", "xxxx"
    fake = ScriptedFakeChat({"xx": 2, "xxx": 99})
    monkeypatch.setattr(llm_engine, "chat", fake)
    monkeypatch.setattr(llm_engine, "chat_prompt_tokens", lambda engine, convs: [10] * len(convs))
    monkeypatch.setattr(llm_engine, "get_engine", lambda engine: fake)
    cfg = GenerationConfig(shards=1, validation={"max_attempts": 3, "retry_temperature": 0.7})
    stats = gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    assert stats.llm_calls == 3 and stats.retried == 2
    assert stats.flags == {"ok": 3, "refusal": 1}
    texts = gen.collect_texts(prompts, "item", cfg, tmp_path, "m", pd.Series(pd.Timestamp(0, tz="UTC"), index=prompts.index))
    by = texts.set_index("item_id")
    assert by.loc[2, "attempts"] == 2 and by.loc[2, "flag"] == "ok" and by.loc[2, "text"].startswith("A detailed")
    assert by.loc[3, "attempts"] == 3 and by.loc[3, "flag"] == "refusal" and by.loc[3, "text"] == ""
    assert by.loc[1, "attempts"] == 1
    # Retries sample with a different seed (greedy would repeat the same answer).
    retries = [(seed, t) for content, seed, t in fake.seen if content == "xxx"]
    assert [s for s, _ in retries] == [0, 1000, 2000] and retries[1][1] == 0.7
    assert gen.flag_counts(texts)["rejected"] == 1 and gen.flag_counts(texts)["retried"] == 2
    # The final verdict is cached: a re-run does not retry the rejected prompt again.
    again = gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    assert again.llm_calls == 0 and again.skipped == 4


def test_too_long_prompt_is_flagged_and_never_sent(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(llm_engine, "chat_prompt_tokens", lambda engine, convs: [5000 if len(c[-1]["content"]) == 3
                                                                                 else 10 for c in convs])
    prompts = _prompts(5)
    stats = gen.generate_shard(prompts, "item", 0, GenerationConfig(shards=1), tmp_path, "m")
    assert stats.flags.get("prompt_too_long") == 1 and sum(fake.calls) == 4


def test_text_rows_carry_no_generation_clock(tmp_path, fake):
    """created_timestamp is the event time, not when the output was generated: the same outputs give the same rows
    (and bytes) in any run; generation.deterministic changes the dtype, so its outputs are cached apart."""
    prompts = _prompts(3)
    event = pd.Series(pd.Timestamp("2020-01-01", tz="UTC"), index=prompts.index)
    cfg = GenerationConfig(shards=1)
    gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    first = gen.collect_texts(prompts, "item", cfg, tmp_path, "m", event)
    assert (first["created_timestamp"] == event).all()
    gen.generate_shard(prompts, "item", 0, cfg, tmp_path / "again", "m")
    assert gen.collect_texts(prompts, "item", cfg, tmp_path / "again", "m", event).equals(first)
    det = GenerationConfig(shards=1, deterministic=True)
    assert gen.output_settings(det, "item", "m") == gen.output_settings(
        GenerationConfig(shards=1, engine={"dtype": "float32"}), "item", "m")
    assert gen.output_settings(det, "item", "m") != gen.output_settings(cfg, "item", "m")
