"""What every backbone's trainer returns, so train_variants treats LightGBM, DeepFM and later backbones alike.

A trained model only has to `predict(split) -> probabilities` and `save(dir)`; each backbone module also offers
`load(dir)` returning the same kind of object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from models.ctr_inputs import CtrSplit


class CtrModel(Protocol):
    def predict(self, split: CtrSplit) -> np.ndarray: ...

    def save(self, model_dir: Path) -> None: ...


@dataclass
class FitResult:
    model: CtrModel
    best_iteration: int  # epoch (DeepFM, 1-based) or boosting round (LightGBM) picked on valid
    n_iterations: int  # epochs / rounds actually run before early stopping
    train_seconds: float  # whole fit: encoders, passes over train, per-iteration valid scoring
    history: list[dict] = field(default_factory=list)  # per-iteration valid metrics
