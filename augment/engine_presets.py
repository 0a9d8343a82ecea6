"""Documented vLLM engine presets: starting points for `generation.engine` on common hardware.

A preset is a plain dict of `EngineConfig` fields; paste it into the run config (or pass `--set` overrides). They
are starting points, not measurements from this machine (we only have CPUs here): tune `max_num_seqs` upward until
throughput stops improving or the KV cache preempts requests (vLLM logs "preempted"), and keep `generation.shards`
equal to the number of engine replicas (GPU pool slots in Airflow).

| preset            | hardware                | model size | notes                                                 |
|-------------------|-------------------------|------------|-------------------------------------------------------|
| cpu-dev           | 2-core dev/CI box       | <= 0.5 B   | the repo default; eager mode saves 60-100 s start-up  |
| gpu-a10g-24gb     | 1x A10G / L4 24 GB      | <= 8 B     | bf16; CUDA graphs on                                  |
| gpu-a100-80gb     | 1x A100 / H100 80 GB    | <= 8 B     | large batch: KV cache is the limit, not compute       |
| gpu-a100x2-tp     | 2x A100 80 GB           | 13-34 B    | tensor parallel inside one replica                    |
| gpu-h100x8-dp     | 8x H100 80 GB           | <= 8 B     | data parallel: 8 replicas in one engine               |

    python -m augment.engine_presets            # print every preset as YAML
"""
from __future__ import annotations

import sys

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


def preset(name: str, **overrides) -> EngineConfig:
    """The EngineConfig of a named preset, with field overrides (e.g. model=...)."""
    if name not in PRESETS:
        raise KeyError(f"unknown engine preset {name!r}; known: {', '.join(PRESETS)}")
    return EngineConfig(**{**PRESETS[name], **overrides})


if __name__ == "__main__":
    names = sys.argv[1:] or list(PRESETS)
    print(yaml.safe_dump({n: {"generation": {"engine": PRESETS[n]}} for n in names}, sort_keys=False))
