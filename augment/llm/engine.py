"""The one place that talks to vLLM in-process: engine construction from config, sampling params, the streaming
`generation.backend: vllm` (InProcessEngine), and the bare one-call `chat` it is measured against.

vLLM quirks live here so the rest of the code never imports vllm:
- CPU builds reserve ~90% of RAM for the KV cache unless VLLM_CPU_KVCACHE_SPACE is set;
- raw `generate` on plain text makes SmolLM2 answer with nothing, so we always go through `LLM.chat`
  (the model's chat template);
- building an engine costs 12-46 s on CPU, so one engine per (process, engine config) is cached and reused by
  every shard that runs in the same process;
- on CPU it starts its engine core with the `spawn` start method, which re-imports the parent's `__main__`: never
  build an engine inside an Airflow task process (augment/stage_process.py runs such stages in a child);
- its CPU threads are pinned to cores; `auto` picks the same core for every engine on the machine, so each
  process claims its own cores first (augment/llm/cpu_slots.py) and the KV cache is sized from config;
- structured outputs go through `SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))`;
- `LLM.chat` runs a batch to completion, so a caller that commits per batch lets the engine drain at every
  boundary; `LLM.enqueue_chat` + `LLMEngine.step` (what `LLM.chat` loops over) keep it fed instead;
- engine counters (prompt/output tokens, prefix-cache queries/hits) need `disable_log_stats=False`;
- the pooling runner (`runner="pooling"`) turns any model into an encoder (see augment/encode/text_encoder.py).

    python -m augment generate --config configs/ml100k.yaml --kind item --shard 0
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from augment.embedded_models import resolve_llm
from augment.llm.backend import ChatRequest, ChatResult
from configs import EngineConfig, GenerationConfig
from configs import environment as env

log = logging.getLogger(__name__)
_ENGINES: dict[str, Any] = {}
_SLOT: Any = None  # augment.llm.cpu_slots.Slot held while this process runs CPU engines
_SLOT_SINCE = 0.0  # epoch seconds when _SLOT was claimed
_CLAIMED = env.CLAIMED_CPU_BIND.name


def model_id(engine: EngineConfig) -> str:
    """A stable identity for lineage: the config reference, the resolved directory name and the dtype it runs in
    (bf16 and fp32 write different text, so they must not share cache entries)."""
    return f"{engine.model}@{resolve_llm(engine.model).name}#{engine_dtype(engine)}"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX); elsewhere torch emulates bf16 matmuls."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def engine_dtype(engine: EngineConfig) -> str:
    """The dtype the engine runs in. `auto`: bfloat16 on a GPU or a CPU with native bf16, float32 on other CPUs,
    where emulated bf16 measured 4.6x slower than fp32 (SmolLM2-135M, AVX2-only AMD EPYC, vllm-cpu 0.32)."""
    if engine.dtype != "auto":
        return engine.dtype
    return "bfloat16" if _has_gpu() or cpu_has_native_bf16() else "float32"


def claim_cores(threads: int) -> str | None:
    """On a CPU build, give this process's engines `threads` cores no other engine on the machine holds.

    The claim lasts until shutdown_engines() or process exit. A VLLM_CPU_OMP_THREADS_BIND set by the user wins."""
    global _SLOT, _SLOT_SINCE
    if _has_gpu():
        return None
    if _SLOT is None:
        bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
        # A value our own ancestor claimed is inherited, not chosen: this process needs cores of its own.
        if bind and bind != os.environ.get(_CLAIMED):
            return bind
        from augment.llm.cpu_slots import claim

        _SLOT = claim(threads)
        _SLOT_SINCE = time.time()
        # Read by the engine core child that vLLM spawns; the marker tells our own descendants it is no user's.
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = os.environ[_CLAIMED] = _SLOT.bind
    return _SLOT.bind


def cores_held_since() -> float | None:
    """Epoch seconds this process got its cores (a claim may wait for another engine to finish)."""
    return _SLOT_SINCE if _SLOT is not None else None


def engine_cores() -> str | None:
    """The cores this process's CPU engines are pinned to (None before an engine was built, or on GPU)."""
    return None if _SLOT is None else _SLOT.bind


def get_engine(engine: EngineConfig) -> Any:
    key = engine.model_dump_json()
    if key in _ENGINES:
        return _ENGINES[key]
    # Config, not whatever the shell exported, sizes each engine's KV cache: two engines side by side must fit.
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kvcache_space_gib)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    claim_cores(engine.cpu_threads)
    from vllm import LLM

    path = resolve_llm(engine.model)
    started = time.perf_counter()
    kwargs: dict[str, Any] = dict(
        model=str(path),
        dtype=engine_dtype(engine),
        max_model_len=engine.max_model_len,
        max_num_seqs=engine.max_num_seqs,
        enforce_eager=engine.enforce_eager,
        tensor_parallel_size=engine.tensor_parallel_size,
        seed=engine.seed,
        enable_prefix_caching=engine.enable_prefix_caching,
        enable_chunked_prefill=engine.enable_chunked_prefill,
        disable_log_stats=False,  # keeps the counters behind engine_counters(); costs nothing measurable
    )
    if engine.data_parallel_size > 1:
        kwargs["data_parallel_size"] = engine.data_parallel_size
    if _has_gpu():
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
    kwargs.update(engine.extra_args)  # never a typed key (EngineConfig checks)
    llm = LLM(**kwargs)
    log.info("vLLM engine for %s ready in %.1f s", path.name, time.perf_counter() - started)
    _ENGINES[key] = llm
    return llm


def shutdown_engines() -> None:
    """Stop cached engines (their worker processes) while logging still works, e.g. at the end of a test session."""
    import gc

    for llm in _ENGINES.values():
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
    _ENGINES.clear()
    gc.collect()
    global _SLOT
    if _SLOT is not None:
        if os.environ.get("VLLM_CPU_OMP_THREADS_BIND") == _SLOT.bind:
            del os.environ["VLLM_CPU_OMP_THREADS_BIND"]
        os.environ.pop(_CLAIMED, None)
        _SLOT.release()
        _SLOT = None


def _has_gpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda_alike()


def sampling_params(request: ChatRequest) -> Any:
    """vLLM SamplingParams of one request (structured outputs through StructuredOutputsParams)."""
    from vllm import SamplingParams

    extra: dict[str, Any] = {}
    if request.json_schema is not None:
        from vllm.sampling_params import StructuredOutputsParams

        extra["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
    return SamplingParams(temperature=request.temperature, top_p=request.top_p,
                          repetition_penalty=request.repetition_penalty, max_tokens=request.max_tokens,
                          seed=request.seed, stop=list(request.stop) or None, **extra)


def _result(out: Any, key: str) -> ChatResult:
    completion = out.outputs[0]
    return ChatResult(text=completion.text, prompt_tokens=len(out.prompt_token_ids or ()),
                      output_tokens=len(completion.token_ids), finish_reason=str(completion.finish_reason), key=key)


def chat(engine: EngineConfig, requests: Sequence[ChatRequest]) -> list[ChatResult]:
    """Run chat requests to completion in one `LLM.chat` call; results come back in input order (the bare call
    the streaming backend is measured against, bench/generation/bench_scale_out.py)."""
    llm = get_engine(engine)
    outputs = llm.chat([list(r.conversation) for r in requests], [sampling_params(r) for r in requests],
                       use_tqdm=False)
    return [_result(out, r.key) for out, r in zip(outputs, requests)]


class InProcessEngine:
    """`generation.backend: vllm`: the cached engine of this process, fed continuously.

    `LLM.enqueue_chat` renders the chat template and queues requests without running them; each `poll` steps
    the engine (`LLMEngine.step`, what `LLM.chat` loops over) until something finishes. The engine core runs in
    its own process and keeps scheduling while we validate and commit, so with `capacity` requests submitted
    (twice max_num_seqs) it always has a full batch waiting instead of draining at every commit."""

    name = "vllm"

    def __init__(self, cfg: GenerationConfig):
        self.engine = cfg.engine
        self.window = cfg.inflight or 2 * cfg.engine.max_num_seqs
        self.llm: Any = None
        self.keys: dict[str, str] = {}  # vLLM request id -> our key

    def start(self) -> None:
        if self.llm is None:
            self.llm = get_engine(self.engine)

    def capacity(self) -> int:
        return self.window

    def prompt_tokens(self, conversations: Sequence[list[dict]]) -> list[int]:
        return chat_prompt_tokens(self.engine, conversations)

    def submit(self, requests: Sequence[ChatRequest]) -> None:
        if not requests:
            return
        self.start()
        ids = self.llm.enqueue_chat([list(r.conversation) for r in requests],
                                    [sampling_params(r) for r in requests], use_tqdm=False)
        # enqueue_chat returns the engine's internal ids ("<id>-<8 random chars>"); outputs and abort_request use
        # the external "<id>" it was given.
        self.keys.update(zip((i.rsplit("-", 1)[0] for i in ids), (r.key for r in requests)))

    def poll(self) -> list[ChatResult]:
        finished: list[ChatResult] = []
        engine = self.llm.llm_engine if self.llm is not None else None
        while not finished and self.keys and engine.has_unfinished_requests():
            for out in engine.step():
                if out.finished:
                    finished.append(_result(out, self.keys.pop(out.request_id)))
        if not finished and self.keys:
            raise RuntimeError(f"vLLM engine has no unfinished requests but {len(self.keys)} never finished")
        return finished

    def counters(self) -> dict[str, int]:
        return engine_counters(self.engine)

    def describe(self) -> dict[str, Any]:
        return {"engine_cores": engine_cores() or "", "cores_held_since": cores_held_since()}

    def close(self) -> None:
        """The engine stays cached for the next shard in this process (shutdown_engines() stops it)."""
        if self.keys and self.llm is not None:  # a failed shard must not leave its requests running
            self.llm.llm_engine.abort_request(list(self.keys))
            self.keys.clear()


def chat_prompt_tokens(engine: EngineConfig, conversations: Sequence[list[dict]]) -> list[int]:
    """Prompt length in tokens after the chat template, as the engine will count it."""
    tok = get_engine(engine).get_tokenizer()
    out = []
    for c in conversations:
        ids = tok.apply_chat_template(list(c), tokenize=True, add_generation_prompt=True)
        out.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids))  # transformers 5 returns a dict
    return out


COUNTERS = {"vllm:prompt_tokens": "prompt_tokens", "vllm:generation_tokens": "output_tokens",
            "vllm:prefix_cache_queries": "prefix_cache_queries", "vllm:prefix_cache_hits": "prefix_cache_hits"}


def engine_counters(engine: EngineConfig) -> dict[str, int]:
    """Cumulative engine counters of the cached engine ({} if it was never built or vLLM exposes none)."""
    llm = _ENGINES.get(engine.model_dump_json())
    if llm is None:
        return {}
    try:
        metrics = llm.get_metrics()
    except Exception as err:  # metrics are a report, never a reason to fail a generation run
        log.warning("vLLM metrics unavailable: %s", err)
        return {}
    out: dict[str, int] = {}
    for m in metrics:
        if m.name in COUNTERS and hasattr(m, "value"):
            out[COUNTERS[m.name]] = out.get(COUNTERS[m.name], 0) + int(m.value)
    return out


def get_pooling_engine(model_dir: str, pooling: str, max_model_len: int, seed: int = 0) -> Any:
    """A vLLM engine with the pooling runner: an encoder (MiniLM) or a decoder LLM used as one (last token)."""
    max_model_len = min(max_model_len, _max_positions(model_dir))  # MiniLM: 256 (its max_seq_length)
    key = f"pooling|{model_dir}|{pooling}|{max_model_len}"
    if key in _ENGINES:
        return _ENGINES[key]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    claim_cores(1)
    from vllm import LLM
    from vllm.config import PoolerConfig

    kwargs: dict[str, Any] = dict(model=model_dir, runner="pooling", convert="embed", max_model_len=max_model_len,
                                  enforce_eager=True, seed=seed)
    if pooling != "auto":
        kwargs["pooler_config"] = PoolerConfig(pooling_type=pooling)
    started = time.perf_counter()
    llm = LLM(**kwargs)
    log.info("vLLM pooling engine for %s (%s) ready in %.1f s", model_dir, pooling, time.perf_counter() - started)
    _ENGINES[key] = llm
    return llm


def _max_positions(model_dir: str) -> int:
    import json
    from pathlib import Path

    # vLLM derives the limit from the position table and, for sentence-transformers dirs, max_seq_length.
    limits = [json.loads((Path(model_dir) / "config.json").read_text()).get("max_position_embeddings")]
    st = Path(model_dir) / "sentence_bert_config.json"
    if st.is_file():
        limits.append(json.loads(st.read_text()).get("max_seq_length"))
    return int(min([x for x in limits if x] or [1 << 20]))


def embed(model_dir: str, texts: Sequence[str], *, pooling: str, max_model_len: int) -> list[list[float]]:
    """One vector per text from the pooling runner, in input order (no normalisation here); long texts are cut."""
    max_model_len = min(max_model_len, _max_positions(model_dir))
    llm = get_pooling_engine(model_dir, pooling, max_model_len)
    outputs = llm.embed(list(texts), use_tqdm=False, tokenization_kwargs={"truncation": True,
                                                                           "max_length": max_model_len})
    return [o.outputs.embedding for o in outputs]
