"""The backend factory: `generation.backend` -> a ChatBackend (augment/llm/backend.py), imported lazily so a
run that uses one backend never imports the others' libraries (vllm, openai, ray).

    from augment.llm.backends import open_backend
    backend = open_backend(cfg.generation)   # not started yet
"""
from __future__ import annotations

from augment.llm.backend import ChatBackend
from configs import GenerationConfig


def open_backend(cfg: GenerationConfig) -> ChatBackend:
    if cfg.backend == "openai":
        from augment.llm.openai_fleet import OpenAIFleet

        return OpenAIFleet(cfg)
    if cfg.backend == "ray":
        from augment.llm.ray_llm import RayDataLLM

        return RayDataLLM(cfg)
    from augment.llm.engine import InProcessEngine

    return InProcessEngine(cfg)
