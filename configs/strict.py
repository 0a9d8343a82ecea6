"""The base of every config section: unknown keys are an error naming the key, and a loaded config is frozen."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
