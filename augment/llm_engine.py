"""The one place that talks to vLLM: engine construction from config, sampling params, chat batches.

vLLM quirks live here so the rest of the code never imports vllm:
- CPU builds reserve ~90% of RAM for the KV cache unless VLLM_CPU_KVCACHE_SPACE is set;
- raw `generate` on plain text makes SmolLM2 answer with nothing, so we always go through `LLM.chat`
  (the model's chat template);
- building an engine costs 12-46 s on CPU, so one engine per (process, engine config) is cached and reused by
  every shard that runs in the same process (e.g. all mapped tasks under `dag.test()`).

    python -m augment generate --config configs/ml100k.yaml --kind item --shard 0
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from augment.config import EngineConfig
from augment.embedded_models import resolve_llm

log = logging.getLogger(__name__)
_ENGINES: dict[str, Any] = {}


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str


def model_id(engine: EngineConfig) -> str:
    """A stable identity for lineage: the config reference plus the resolved directory name."""
    return f"{engine.model}@{resolve_llm(engine.model).name}"


def get_engine(engine: EngineConfig) -> Any:
    key = engine.model_dump_json()
    if key in _ENGINES:
        return _ENGINES[key]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(engine.cpu_kvcache_space_gib))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import LLM

    path = resolve_llm(engine.model)
    started = time.perf_counter()
    kwargs: dict[str, Any] = dict(
        model=str(path),
        dtype=engine.dtype,
        max_model_len=engine.max_model_len,
        max_num_seqs=engine.max_num_seqs,
        enforce_eager=engine.enforce_eager,
        tensor_parallel_size=engine.tensor_parallel_size,
        seed=engine.seed,
        enable_prefix_caching=True,
    )
    if _has_gpu():
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
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


def _has_gpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cuda_alike()


def chat(engine: EngineConfig, conversations: Sequence[list[dict]], *, max_tokens: int, temperature: float,
         top_p: float, repetition_penalty: float, seed: int) -> list[ChatResult]:
    """Run one batch of chat conversations; results come back in input order."""
    from vllm import SamplingParams

    llm = get_engine(engine)
    params = SamplingParams(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty,
                            max_tokens=max_tokens, seed=seed)
    outputs = llm.chat(list(conversations), params, use_tqdm=False)
    results = []
    for out in outputs:
        completion = out.outputs[0]
        results.append(ChatResult(text=completion.text, prompt_tokens=len(out.prompt_token_ids or ()),
                                  output_tokens=len(completion.token_ids),
                                  finish_reason=str(completion.finish_reason)))
    return results
