"""The scoring service's knobs, and the one place their defaults live (the CLI reads them from here). Light: it
imports no model library, so `python -m models.serving` can set the thread count before torch or LightGBM start.

    from models.serving.settings import ServingSettings, default
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.train_config import MODEL_NAME


@dataclass(frozen=True)
class ServingSettings:
    """The service's knobs (kept out of configs: serving is not a pipeline stage)."""

    workdir: Path
    name: str = MODEL_NAME         # registry model name (train.model_name's default)
    max_candidates: int = 500      # larger requests get a 422
    poll_seconds: float = 2.0      # champion pointer check interval; 0 = only POST /admin/reload
    threads: int = 1               # torch / LightGBM threads per process
    feature_store: str | None = None  # None: where the model's manifest says (models.registry.model_feature_store)


def default(name: str) -> Any:
    """The default of one ServingSettings field."""
    return next(f.default for f in dataclasses.fields(ServingSettings) if f.name == name)
