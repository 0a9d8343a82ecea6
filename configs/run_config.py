"""The typed run configuration: one YAML file per run, unknown keys rejected.

Every stage receives the section it needs; the whole resolved config is saved into every manifest so a table or
model can be traced back to the exact settings that made it. `augment` reads the data/split/prompts/generation/
encode sections, `models` the train section; neither imports the other.

    python -m augment show-config configs/ml100k.yaml [--set generation.shards=4]
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from configs.strict import Strict as _Strict
from configs.train_config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (editable install)
ITEM_BASE_COLUMNS = ("item_id", "title", "year", "genres")  # what every items table has
RAW_ITEM_DEFAULT = ["title", "year", "genres"]
# vLLM engine arguments the project sets itself (besides the typed EngineConfig fields): not for extra_args.
ENGINE_ARGS_SET_BY_CODE = frozenset({"disable_log_stats", "runner", "convert", "pooler_config", "served_model_name",
                                     "generation_config", "host", "port"})


class ColumnMap(_Strict):
    """One source file of a generic dataset and how its columns map onto our canonical names."""

    path: str
    format: Literal["csv", "parquet", "auto"] = "auto"
    sep: str = ","
    columns: dict[str, str] = Field(default_factory=dict, description="canonical name -> source column name")


class GenericSource(_Strict):
    interactions: ColumnMap
    items: ColumnMap
    users: ColumnMap | None = None
    timestamp_unit: Literal["s", "ms"] = "s"
    genres_sep: str = "|"


class IdTypes(_Strict):
    """Per entity: "auto" infers int only when every id in every file is a canonical integer (common/id_keys.py)."""

    user: Literal["auto", "int", "string"] = "auto"
    item: Literal["auto", "int", "string"] = "auto"


class DataConfig(_Strict):
    source: Literal["movielens100k", "generic"] = "movielens100k"
    recbole_version: str = "1.2.1"
    recbole_sha256: str = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
    generic: GenericSource | None = None
    label_threshold: float = 4.0
    id_types: IdTypes = IdTypes()
    # rating: label = rating >= label_threshold. label: a 0/1 column. event: label = event in positive_events.
    # positive_only: every row is a positive; negatives are sampled at split time (split.negatives).
    feedback: Literal["rating", "label", "event", "positive_only"] = "rating"
    positive_events: list[str] = Field(default_factory=list, description="feedback=event: the events that are positives")
    rating_range: tuple[float, float] | None = Field(None, description="ratings outside [lo, hi] are an error")
    duplicates: Literal["drop", "error"] = Field("drop", description="exact duplicate interaction rows")
    sample_users: int | None = Field(None, ge=10, description="keep a seeded random subset of users (quick look)")
    sample_seed: int = 0
    # Extra item text read from the items file (canonical names, mapped through data.generic.items.columns like the
    # others), carried in the items table after genres: usable as $name in item prompt templates and in
    # encode.raw_item_columns.
    item_text_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _generic_needs_paths(self) -> "DataConfig":
        if self.source == "generic" and self.generic is None:
            raise ValueError("data.source=generic needs a data.generic section")
        if self.feedback == "event" and not self.positive_events:
            raise ValueError("data.feedback=event needs data.positive_events (the event names that are positives)")
        if self.feedback != "event" and self.positive_events:
            raise ValueError("data.positive_events is only used with data.feedback=event")
        if self.rating_range is not None and not self.rating_range[0] <= self.rating_range[1]:
            raise ValueError(f"data.rating_range {list(self.rating_range)}: low end above high end")
        if self.item_text_columns and self.source != "generic":
            raise ValueError("data.item_text_columns needs data.source=generic (MovieLens-100K has no item text)")
        for name in self.item_text_columns:
            # A template placeholder and a Parquet column name: an identifier, and not a name the items table has.
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in ITEM_BASE_COLUMNS:
                raise ValueError(f"data.item_text_columns: {name!r} must be a lower-case identifier other than "
                                 f"{list(ITEM_BASE_COLUMNS)}")
        if len(set(self.item_text_columns)) != len(self.item_text_columns):
            raise ValueError(f"data.item_text_columns has a duplicate: {self.item_text_columns}")
        return self


class NegativeSampling(_Strict):
    """Negatives for positives-only logs (data.feedback=positive_only), drawn at split time (augment/data/negatives.py)."""

    per_positive: int = Field(4, ge=1, description="sampled negatives per positive CTR sample")
    popularity_alpha: float = Field(0.75, ge=0.0, description="P(item) ~ train count**alpha; 0 = uniform")
    seed: int = 0


class SplitConfig(_Strict):
    history_max: int = Field(30, ge=1)
    seed: int = 42
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    negatives: NegativeSampling = NegativeSampling()


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


class EncodeConfig(_Strict):
    model: str = "embedded:all-minilm-l6-v2"
    batch_size: int = 64
    normalize: bool = True
    # sentence-transformers, or vLLM's pooling runner (same vectors for MiniLM; any decoder LLM as an encoder).
    backend: Literal["sentence-transformers", "vllm-pooling"] = "sentence-transformers"
    pooling: Literal["auto", "MEAN", "LAST", "CLS"] = "auto"  # vllm-pooling only; "auto" = the model's own
    prompt: Literal["none", "notellm"] = "none"  # notellm: compress the text into one word, pool the last token
    max_model_len: int = Field(512, ge=16)
    # The no-LLM control text (kind item_raw), in this order: any of title/year/genres and data.item_text_columns.
    raw_item_columns: list[str] = Field(default_factory=lambda: list(RAW_ITEM_DEFAULT), min_length=1)


class BehaviourEncoderConfig(_Strict):
    """NoteLLM-style behaviour alignment of the text encoder (augment/encode/behaviour_encoder.py): encode.model tuned
    contrastively on item pairs that co-occur in training interactions, one copy per text it encodes (the LLM item
    knowledge and the raw-text control), written as item_knowledge_emb_bt / item_raw_emb_bt.

    `mode: head` (default) trains only a d x d linear head on the frozen encoder's vectors, which are computed once
    per item, so every mined pair fits in seconds on CPU; `mode: full` fine-tunes the whole transformer (~10-17 s
    per 32-pair step on 2 CPU cores: hundreds of pairs, not tens of thousands). Each mode reads its own `head_*` /
    plain training keys; `max_pairs` caps the pairs of both, its default depending on the mode."""

    enabled: bool = False  # off: the stage and its DAG task do nothing (the CLI's --force runs it anyway)
    mode: Literal["head", "full"] = "head"
    window: int = Field(3, ge=1, description="pair each positive with a user's next `window` positives")
    # ML-100K mines ~70k distinct pairs. Head mode takes them all (HEAD_MAX_PAIRS); full mode reads ~2 (LLM text)
    # to ~7 (raw text) pairs/s on a shared 2-core box, so 512 pairs took ~6 min for both encoders
    # (bench/behaviour_encoder/ml100k.py).
    max_pairs: int | None = Field(None, ge=1, description="distinct pairs kept (a seeded sample when more are "
                                  "mined); unset: 100_000 in head mode, 512 in full mode")
    # head mode; defaults picked on ML-100K held-out co-occurrence pairs (bench/behaviour_encoder/ml100k.py): 20
    # epochs at scale 5 gave AUC 0.51 -> 0.53 (knowledge) / 0.55 -> 0.58 (raw), the best of the settings tried;
    # scale 20 (sentence-transformers' default) pulled every vector together (random-pair cosine ~0.92).
    head_epochs: int = Field(20, ge=1)
    head_scale: float = Field(5.0, gt=0, description="cosine-similarity scale (inverse temperature) of the loss")
    head_batch_size: int = Field(256, ge=2, description="pairs per step; in-batch negatives like big batches")
    head_lr: float = Field(1e-3, gt=0)
    # full mode
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2, description="pairs per step; the other pairs of a batch are its negatives")
    lr: float = Field(2e-5, gt=0)
    max_seq_length: int = Field(128, ge=8, description="tokens per text while training and encoding (both modes)")
    seed: int = 0

    @property
    def pair_cap(self) -> int:
        """`max_pairs`, or the mode's default when unset."""
        if self.max_pairs is not None:
            return self.max_pairs
        return HEAD_MAX_PAIRS if self.mode == "head" else FULL_MAX_PAIRS


HEAD_MAX_PAIRS = 100_000  # every pair ML-100K mines (~70k); a cap for bigger logs (pairs sit in memory as text)
FULL_MAX_PAIRS = 512


def interval_tag(end: datetime) -> str:
    """How an interval end names its per-interval files (stats directory, history row): UTC, to the minute."""
    return f"{end.astimezone(timezone.utc):%Y-%m-%dT%H%M}"


class RefreshPolicy(_Strict):
    """When a user's profile is written again (LIBER / KAR "new partitions only"): at an interval end, a user gets a
    new profile when at least `min_new_interactions` arrived since the last one, or when at least one did and the
    last profile is `max_age_days` old or older. A user without a profile gets one once they have
    `min_new_interactions`."""

    min_new_interactions: int = Field(3, ge=1)
    max_age_days: float = Field(7.0, gt=0)


class StreamConfig(_Strict):
    """Daily operation (augment/data/stream_split.py): the log is read as of an interval end, never past it.

    The bootstrap run ends at `start` and covers everything before it; every later run ends `interval_hours` after
    the one before (the DAG's data_interval_end). `end` is the interval end of one run: set by the DAG from its data
    interval (or by hand: --set stream.end=...), never in the YAML of a scheduled deployment.

    The log is one table (data.generic.interactions, read up to `end`), or with `partitions` one file per interval
    (augment/data/ingest.py): data.generic.interactions is then the bootstrap part (everything before `start`) and the
    interval [s, s + interval) is the file `partitions.format(start=s)`, with the same column map."""

    start: datetime = Field(description="the bootstrap run's end; later runs end on start + k * interval_hours")
    interval_hours: int = Field(24, ge=1, description="one run per interval; the DAG's cron is derived from it "
                                "(cron_schedule): a divisor of 24")
    end: datetime | None = Field(None, description="this run's interval end (data_interval_end)")
    valid_intervals: int = Field(1, ge=1, description="the intervals before the newest one that select models")
    refresh: RefreshPolicy = RefreshPolicy()
    partitions: str | None = Field(None, description="one log file per interval: a path template formatted with "
                                   "str.format(start=<interval start>), e.g. data/events/ds={start:%Y-%m-%d}.csv "
                                   "(relative to the repository root; data.source generic only)")

    @model_validator(mode="after")
    def _on_grid(self) -> "StreamConfig":
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:  # a naive time would be read in the worker's zone
                setattr(self, name, value.replace(tzinfo=timezone.utc))
        if self.end is not None:
            steps = (self.end - self.start) / self.interval
            if self.end < self.start or steps != int(steps):
                raise ValueError(f"stream.end {self.end.isoformat()} is not on the interval grid: start "
                                 f"{self.start.isoformat()} + k * {self.interval_hours} h, k >= 0")
        if self.partitions is not None:
            try:
                paths = [self.partition_path(s) for s in (self.start, self.start + self.interval)]
            except (KeyError, IndexError, ValueError, AttributeError) as err:
                raise ValueError(f"stream.partitions {self.partitions!r} is not a path template of {{start}}: "
                                 f"{type(err).__name__}: {err}") from None
            # Two intervals in one file would be read twice (or half of it never), e.g. a daily name for hourly runs.
            if paths[0] == paths[1]:
                raise ValueError(f"stream.partitions {self.partitions!r} names one file ({paths[0]}) for two "
                                 f"intervals: it must tell interval starts {self.interval_hours} h apart")
        return self

    @property
    def interval(self) -> timedelta:
        return timedelta(hours=self.interval_hours)

    @property
    def cron(self) -> str:
        """augment_features' schedule: one run per interval, on the grid of `start`."""
        return cron_schedule(self.interval_hours, self.start)

    @property
    def run_kind(self) -> str:
        """"bootstrap" for the run that ends at `start`, else "interval"."""
        return "bootstrap" if self.require_end() == self.start else "interval"

    def require_end(self) -> datetime:
        if self.end is None:
            raise ValueError("stream.end is not set: the DAG sets it from data_interval_end; by hand pass "
                             "--set stream.end=<interval end>")
        return self.end

    def intervals(self) -> list[tuple[datetime, datetime]]:
        """[(s, s + interval)] for every interval after `start` that ends by `end`, oldest first (none for the
        bootstrap run)."""
        n = round((self.require_end() - self.start) / self.interval)
        return [(self.start + k * self.interval, self.start + (k + 1) * self.interval) for k in range(n)]

    def partition_path(self, interval_start: datetime) -> str:
        """The `partitions` file of the interval starting at `interval_start`, as configured (maybe relative)."""
        if self.partitions is None:
            raise ValueError("stream.partitions is not set: the log is one table")
        return self.partitions.format(start=interval_start)


def cron_schedule(interval_hours: int | None = None, start: datetime | None = None) -> str:
    """The UTC cron of one run every `interval_hours` (default: StreamConfig's) whose intervals end on the grid of
    `start` (default midnight): "0 0 * * *" daily, "0 0,6,12,18 * * *" every 6 h. Cron repeats within a day, so
    the interval must divide 24 h and `start` be on a whole minute."""
    hours = StreamConfig.model_fields["interval_hours"].default if interval_hours is None else interval_hours
    if hours < 1 or 24 % hours:
        raise ValueError(f"stream.interval_hours={hours}: a schedule needs a divisor of 24 (1, 2, 3, 4, 6, 8, 12, 24)")
    at = (start or datetime(1970, 1, 1, tzinfo=timezone.utc)).astimezone(timezone.utc)
    if at.second or at.microsecond:
        raise ValueError(f"stream.start {at.isoformat()}: a schedule needs a start on a whole minute")
    ends = sorted((at.hour + k * hours) % 24 for k in range(24 // hours))
    when = "*" if hours == 1 else ",".join(map(str, ends))
    return f"{at.minute} {when} * * *"


class S3StoreOptions(_Strict):
    """How to reach an S3 (or S3-compatible: MinIO, Ceph, moto) endpoint. Credentials never go here: they come from
    the AWS default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, roles)."""

    endpoint_override: str | None = Field(None, description="host:port or http(s)://host:port; default "
                                          "AWS_ENDPOINT_URL, else AWS itself")
    region: str | None = Field(None, description="default AWS_REGION / AWS_DEFAULT_REGION")
    scheme: Literal["https", "http"] | None = Field(None, description="default https (or the endpoint URL's)")
    force_virtual_addressing: bool | None = None
    connect_timeout: float | None = Field(None, gt=0)
    request_timeout: float | None = Field(None, gt=0)
    max_attempts: int | None = Field(None, ge=1)


class FeatureStoreConfig(_Strict):
    """Where the run's feature tables live (feature_store/locations.py). The generation and encode caches stay in
    the local workdir whatever this says."""

    uri: str | None = Field(None, description="None: <workdir>/feature_store; a path (relative: to the repository "
                            "root), s3://bucket/prefix, gs://bucket/prefix or any fsspec URL")
    s3: S3StoreOptions = S3StoreOptions()

    @model_validator(mode="after")
    def _no_credentials(self) -> "FeatureStoreConfig":
        from urllib.parse import urlsplit

        if self.uri is not None:
            netloc = urlsplit(self.uri).netloc
            if "@" in netloc:
                raise ValueError("feature_store.uri: credentials do not go in the config; use the environment "
                                 "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...)")
        return self


class RunConfig(_Strict):
    workdir: str = "var"
    feature_store: FeatureStoreConfig = FeatureStoreConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    prompts: PromptConfig = PromptConfig()
    generation: GenerationConfig = GenerationConfig()
    encode: EncodeConfig = EncodeConfig()
    train: TrainConfig = TrainConfig()
    behaviour_encoder: BehaviourEncoderConfig = BehaviourEncoderConfig()
    stream: StreamConfig | None = None  # daily operation over data intervals; None: one run over the whole log

    @model_validator(mode="after")
    def _stream_supported(self) -> "RunConfig":
        if self.stream is None:
            return self
        # A key that depends on which ids today's file happens to hold would change every key the day one
        # non-numeric id arrives.
        if "auto" in (self.data.id_types.user, self.data.id_types.item):
            raise ValueError("stream needs declared id types: set data.id_types.user and .item to int or string")
        if self.generation.structured.enabled or self.generation.external.user is not None:
            raise ValueError("stream: structured generation and external user text are one-shot only for now "
                             "(they key users by user_id alone; stream profiles are keyed by user and cutoff)")
        if self.data.feedback == "positive_only":
            raise ValueError("stream: positives-only logs (sampled negatives) are one-shot only for now")
        if self.behaviour_encoder.enabled:  # static item vectors would learn from held-out intervals' history rows
            raise ValueError("stream: behaviour_encoder is one-shot only for now")
        return self

    @model_validator(mode="after")
    def _raw_columns_exist(self) -> "RunConfig":
        known = [*RAW_ITEM_DEFAULT, *self.data.item_text_columns]
        unknown = [c for c in self.encode.raw_item_columns if c not in known]
        if unknown or len(set(self.encode.raw_item_columns)) != len(self.encode.raw_item_columns):
            raise ValueError(f"encode.raw_item_columns {self.encode.raw_item_columns}: each once, from {known} "
                             "(add item text to data.item_text_columns first)")
        return self

    def digest(self) -> str:
        """A stable short hash of the resolved config."""
        from common.files import json_digest  # lazy: DAG files import configs at parse time

        return json_digest(self.model_dump(mode="json"))

    @property
    def stats_path(self) -> Path:
        """Where stages write their stats (common/stage_stats.py): one directory per interval in a daily run,
        so an interval's LLM calls and wall time stay apart from the others'."""
        base = self.workdir_path / "stats"
        if self.stream is None or self.stream.end is None:
            return base
        return base / f"end={interval_tag(self.stream.end)}"

    def with_stream_end(self, end: datetime) -> "RunConfig":
        """This config for the run whose interval ends at `end` (validated: on the interval grid)."""
        if self.stream is None:
            raise ValueError("with_stream_end: the config has no stream section")
        raw = self.model_dump(mode="json")
        raw["stream"]["end"] = end.isoformat()
        return RunConfig.model_validate(raw)

    @property
    def feature_store_uri(self) -> str:
        """The store's location: feature_store.uri (relative paths against the repository root), else
        <workdir>/feature_store."""
        uri = self.feature_store.uri
        if uri is None:
            return str(self.workdir_path / "feature_store")
        if "://" in uri:
            return uri
        path = Path(uri).expanduser()
        return str(path if path.is_absolute() else (REPO_ROOT / path).resolve())

    @property
    def workdir_path(self) -> Path:
        """Relative workdirs are relative to the repository root, so the CLI, the DAGs and any worker's CWD agree."""
        path = Path(self.workdir).expanduser()
        return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def parse_overrides(pairs: list[str]) -> dict:
    """`--set key.path=value` pairs (values parsed as YAML) -> {dotted key: value} for load_config."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read a YAML run config; unknown keys anywhere are an error naming the key."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return RunConfig.model_validate(raw)
