"""Generation bookkeeping with a named fake LLM: sharding, per-prompt cache, resume and skip logic.

The real vLLM path is covered in test_vllm_generation.py (slow)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from augment.llm import generate as gen
from augment.text.output_validation import flag_counts
from configs import GenerationConfig


@pytest.fixture
def fake(fake_backend):
    return fake_backend


def _prompts(n: int) -> pd.DataFrame:
    msgs = [json.dumps([{"role": "user", "content": "x" * (i + 1)}]) for i in range(n)]
    return pd.DataFrame({"item_id": range(1, n + 1), "messages": msgs, "template_name": "t",
                         "template_version": "1", "prompt_hash": [f"h{i}" for i in range(n)]})


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
    first_calls = len(fake.requests)
    assert first_calls == 30 and fake.max_inflight <= fake.window
    again = [gen.generate_shard(prompts, "item", s, cfg, tmp_path, "m", batch_size=4) for s in range(3)]
    assert sum(s.generated for s in again) == 0 and sum(s.skipped for s in again) == 30
    assert len(fake.requests) == first_calls and fake.started == 3  # no LLM call (not even a start) when unchanged

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


def scripted(good_from_attempt: dict[str, int]):
    """A fake answer whose quality depends on the attempt's seed: bad first, good from a given attempt."""
    from augment.llm.backend import ChatResult

    def answer(r):
        attempt = 1 + r.seed // 1000
        content = r.conversation[-1]["content"]
        good = attempt >= good_from_attempt.get(content, 1)
        text = f"A detailed and valid description of {content}." if good else "I'm sorry, I cannot help."
        return ChatResult(text, 10, 12, "stop", key=r.key)
    return answer


def test_rejected_outputs_are_retried_with_new_seed_then_flagged(tmp_path, fake):
    prompts = _prompts(4)  # contents "x", "xx", "xxx", "xxxx"
    fake.answer = scripted({"xx": 2, "xxx": 99})
    cfg = GenerationConfig(shards=1, validation={"max_attempts": 3, "retry_temperature": 0.7})
    stats = gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    assert stats.llm_calls == 4 + 2 + 1 and stats.retried == 2  # requests: 4 first attempts, 2 second, 1 third
    assert stats.retry_output_tokens == 3 * 12
    assert stats.flags == {"ok": 3, "refusal": 1}
    texts = gen.collect_texts(prompts, "item", cfg, tmp_path, "m", pd.Series(pd.Timestamp(0, tz="UTC"), index=prompts.index))
    by = texts.set_index("item_id")
    assert by.loc[2, "attempts"] == 2 and by.loc[2, "flag"] == "ok" and by.loc[2, "text"].startswith("A detailed")
    assert by.loc[3, "attempts"] == 3 and by.loc[3, "flag"] == "refusal" and by.loc[3, "text"] == ""
    assert by.loc[1, "attempts"] == 1
    # Retries sample with a different seed (greedy would repeat the same answer).
    retries = [(r.seed, r.temperature) for r in fake.requests if r.conversation[-1]["content"] == "xxx"]
    assert [s for s, _ in retries] == [0, 1000, 2000] and retries[1][1] == 0.7
    assert flag_counts(texts)["rejected"] == 1 and flag_counts(texts)["retried"] == 2
    # The final verdict is cached: a re-run does not retry the rejected prompt again.
    again = gen.generate_shard(prompts, "item", 0, cfg, tmp_path, "m")
    assert again.llm_calls == 0 and again.skipped == 4


def test_too_long_prompt_is_flagged_and_never_sent(tmp_path, fake):
    fake.tokens = lambda convs: [5000 if len(c[-1]["content"]) == 3 else 10 for c in convs]
    prompts = _prompts(5)
    stats = gen.generate_shard(prompts, "item", 0, GenerationConfig(shards=1), tmp_path, "m")
    assert stats.flags.get("prompt_too_long") == 1 and len(fake.requests) == 4


def test_backend_refusing_a_prompt_as_too_long_publishes_the_flag(tmp_path, fake):
    """A remote backend cannot count tokens first: its own refusal is flagged the same way, never retried."""
    from augment.llm.backend import ChatResult

    fake.tokens = lambda convs: None
    ok = fake.answer
    fake.answer = lambda r: (ChatResult("", 0, 0, "context length exceeded", key=r.key, error="prompt_too_long")
                             if len(r.conversation[-1]["content"]) == 2 else ok(r))
    prompts = _prompts(4)
    stats = gen.generate_shard(prompts, "item", 0, GenerationConfig(shards=1), tmp_path, "m")
    assert stats.flags == {"prompt_too_long": 1, "truncated": 3} and len(fake.requests) == 4
    texts = gen.collect_texts(prompts, "item", GenerationConfig(shards=1), tmp_path, "m",
                              pd.Series(pd.Timestamp(0, tz="UTC"), index=prompts.index)).set_index("item_id")
    assert texts.loc[2, "flag"] == "prompt_too_long" and texts.loc[2, "text"] == ""


def test_window_is_kept_full_and_commits_come_in_batches(tmp_path, fake):
    """Submit-ahead: requests are topped up to the backend's capacity whenever results come back (never a drain
    at a commit boundary), and the cache still gains one file per batch_size final rows."""
    fake.window, fake.per_poll = 6, 2
    cfg = GenerationConfig(shards=1)
    stats = gen.generate_shard(_prompts(23), "item", 0, cfg, tmp_path, "m", batch_size=5)
    assert stats.generated == 23 and fake.max_inflight == 6
    parts = sorted(tmp_path.glob("part-*.parquet"))
    assert sorted(gen.pq.ParquetFile(p).metadata.num_rows for p in parts) == [3, 5, 5, 5, 5]
    assert gen.read_cache(tmp_path)["gen_key"].nunique() == 23


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
