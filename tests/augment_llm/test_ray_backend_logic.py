"""`generation.backend: ray` pure logic (augment/llm/ray_llm.py): finish reasons, request rows, config, and how the
stage's submit/poll becomes Ray Data waves, with a named fake standing in for Ray (the real backend runs in
test_ray_backend.py)."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from augment.llm.backend import ChatRequest
from augment.llm.ray_llm import RayDataLLM, engine_bundle, finish_reason, output_row, sampling_row, stop_token_ids
from configs import GenerationConfig

EOS = 2


@pytest.mark.parametrize("n, last, prompt, max_tokens, max_len, expected", [
    (5, EOS, 10, 16, 1024, "stop"),       # EOS before the budget
    (16, EOS, 10, 16, 1024, "stop"),      # EOS as the last allowed token: vLLM checks stop before length
    (16, 7, 10, 16, 1024, "length"),      # budget used up
    (4, 7, 1020, 16, 1024, "length"),     # context ran out before the budget
    (5, 7, 10, 16, 1024, "stop"),         # neither: a stop string ended it
])
def test_finish_reason_follows_vllm_stop_order(n, last, prompt, max_tokens, max_len, expected):
    assert finish_reason(n, last, prompt, max_tokens, max_len, {EOS}) == expected


def test_stop_ids_merge_tokenizer_and_generation_config(tmp_path):
    class FakeTokenizer:
        eos_token_id = 2

    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 49152]}))
    assert stop_token_ids(tmp_path, FakeTokenizer()) == {2, 49152}
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 5}))
    assert stop_token_ids(tmp_path, FakeTokenizer()) == {2, 5}


def _request(key: str, schema: dict | None = None, seed: int = 0, temperature: float = 0.0) -> ChatRequest:
    return ChatRequest(key=key, conversation=[{"role": "user", "content": f"prompt {key}"}], max_tokens=8,
                       temperature=temperature, top_p=1.0, repetition_penalty=1.1, seed=seed, json_schema=schema)


def test_sampling_row_carries_each_requests_own_sampling_and_schema_as_text():
    schema = {"type": "object", "properties": {"tags": {"type": "array"}}}
    row = sampling_row(_request("0:2", schema, seed=1000, temperature=0.7))
    assert row == {"temperature": 0.7, "top_p": 1.0, "repetition_penalty": 1.1, "max_tokens": 8, "seed": 1000,
                   "structured_outputs": {"json": json.dumps(schema, sort_keys=True)}}
    assert "structured_outputs" not in sampling_row(_request("0:1"))
    # The vLLM class Ray builds from it takes exactly these keywords.
    import inspect

    from vllm import SamplingParams
    params = set(inspect.signature(SamplingParams).parameters) | set(getattr(SamplingParams, "__struct_fields__", ()))
    assert set(row) - {"structured_outputs"} <= params


def test_output_row_keeps_what_a_result_needs():
    row = {"key": "3:1", "generated_text": "hi", "num_input_tokens": 12, "num_generated_tokens": 2,
           "generated_tokens": [17, EOS], "max_tokens": 8, "prompt": "", "batch_uuid": "x"}
    assert output_row(row) == {"key": "3:1", "text": "hi", "prompt_tokens": 12, "output_tokens": 2,
                               "max_tokens": 8, "last_token": EOS}


def test_ray_config_is_strict_and_cpu_only_by_default():
    cfg = GenerationConfig(backend="ray", ray={"cpus_per_engine": 0.5, "replicas": 2})
    assert engine_bundle(cfg) == {"CPU": 0.5}
    assert engine_bundle(GenerationConfig(backend="ray", ray={"gpus_per_engine": 1})) == {"CPU": 1.0, "GPU": 1}
    for bad in ({"address": "http://head:8265"}, {"replicas": 0}, {"cpus_per_engine": 0}, {"dashboard": True}):
        with pytest.raises(ValueError, match=r"ray\.\w+"):
            GenerationConfig(backend="ray", ray=bad)
    for good in (None, "auto", "ray://head:10001", "10.0.0.5:6379"):
        assert GenerationConfig(backend="ray", ray={"address": good}).ray.address == good


class FakeWavesRayDataLLM(RayDataLLM):
    """A named fake: the real RayDataLLM's buffering and wave logic, with each Ray dataset replaced by a list of
    output batches computed from the rows (answer(row) -> output_row dict), `per_batch` rows per batch in reverse
    order (engines finish batches in any order)."""

    def __init__(self, cfg: GenerationConfig, answer, per_batch: int = 3):
        super().__init__(cfg)
        self.answer, self.per_batch = answer, per_batch
        self.waves_run: list[list[dict]] = []
        self.stop_ids = {EOS}

    def start(self) -> None:
        self.processor = "fake"

    def prompt_tokens(self, conversations):
        return [10] * len(conversations)

    def _row(self, request):
        return {"key": request.key, "tokenized_prompt": [1] * 10, "max_tokens": request.max_tokens,
                "sampling_params": sampling_row(request)}

    def _run_wave(self, rows):
        self.waves_run.append(rows)
        outs = [self.answer(r) for r in rows][::-1]
        return iter(pa.Table.from_pylist(outs[i:i + self.per_batch]) for i in range(0, len(outs), self.per_batch))


def _answer(row: dict) -> dict:
    # Attempt 1 of every third prompt writes nothing useful (rejected); retries sample and write text.
    i, attempt = (int(x) for x in row["key"].split(":"))
    text = "" if (i % 3 == 0 and attempt == 1) else f"a useful description number {i} of a film, attempt {attempt}."
    return {"key": row["key"], "text": text, "prompt_tokens": 10, "output_tokens": 6, "max_tokens": 8,
            "last_token": EOS}


def test_first_attempts_form_one_wave_and_retries_the_next():
    from augment.llm.generate import ShardStats, run_prompts

    cfg = GenerationConfig(backend="ray")
    todo = pd.DataFrame({"messages": [json.dumps([{"role": "user", "content": f"film {i}"}]) for i in range(10)],
                         "gen_key": [f"k{i}" for i in range(10)], "prompt_hash": [f"h{i}" for i in range(10)]})
    stats = ShardStats("item", 0, 1, 10, 0, 0, 0, 0, 0.0)
    backend = FakeWavesRayDataLLM(cfg, _answer)
    committed: list[pd.DataFrame] = []
    run_prompts(todo, "item", cfg, None, stats, backend, committed.append, batch_size=4)
    rows = pd.concat(committed)
    assert len(rows) == 10 and set(rows["gen_key"]) == set(todo["gen_key"])
    assert [len(w) for w in backend.waves_run] == [10, 4]  # prompts 0, 3, 6, 9 were retried together
    retry_seeds = {r["sampling_params"]["seed"] for r in backend.waves_run[1]}
    assert retry_seeds == {cfg.sampling.seed + 1000}
    assert {r["sampling_params"]["temperature"] for r in backend.waves_run[1]} == {cfg.validation.retry_temperature}
    assert (rows.set_index("gen_key").loc[["k0", "k3"], "attempts"] == 2).all()
    assert [(w["rows"], w["rows_done"]) for w in backend.where["waves"]] == [(10, 10), (4, 4)]
    assert all(w["seconds"] >= 0 for w in backend.where["waves"]) and backend.wave is None
    assert backend.counters() == {"prompt_tokens": 140, "output_tokens": 84}
    assert backend.poll() == [] and backend.inflight == 0


def test_inflight_bounds_the_wave_size():
    cfg = GenerationConfig(backend="ray", inflight=4)
    backend = FakeWavesRayDataLLM(cfg, _answer)
    assert backend.capacity() == 4
    assert RayDataLLM(GenerationConfig(backend="ray")).capacity() > 10**9


def test_a_wave_that_loses_rows_fails_loudly():
    class LosingFake(FakeWavesRayDataLLM):
        def _run_wave(self, rows):
            return super()._run_wave(rows[:-1])

    backend = LosingFake(GenerationConfig(backend="ray"), _answer)
    backend.submit([_request("0:1"), _request("1:1")])
    assert len(backend.poll()) == 1
    with pytest.raises(RuntimeError, match="returned 1"):
        backend.poll()
