"""The model identity that keys the generation cache and goes into every text table's lineage.

    from augment.llm.model_identity import model_id_for
    model_id_for(cfg.generation)   # the same string for every backend that runs the same weights and dtype
"""
from __future__ import annotations

from configs import GenerationConfig


def model_id_for(cfg: GenerationConfig) -> str:
    """The model identity in cache keys and lineage. An in-process or Ray engine and a fleet started by
    `python -m augment serve-llm` from the same engine settings run the same weights in the same dtype, so they
    share one identity (and one cache); an endpoint named by `generation.openai.served_model` is that name."""
    if cfg.backend == "openai" and cfg.openai.served_model:
        return f"openai:{cfg.openai.served_model}"
    from augment.llm.engine import model_id  # lazy: vLLM-side helpers

    return model_id(cfg.engine)
