"""Backbone name -> its trainer and its saved-model class, imported lazily (torch + deepctr cost seconds, and a
LightGBM-only run or a LightGBM model being served should not pay for them).

Every model class offers the same interface: `load(dir)`, `save(dir)`, `predict(split)`, `encode(split)` (the
input matrix), `input_layout()` (which model column / vector group each block of that matrix holds),
`forward_fn(threads)` (matrix -> probabilities), `required_groups` and `feature_map` (models/feature_spec.py
`common_feature_map` + the backbone's own `backbone_state` / `params`). The registry and serving use only these.

    from models.backbones import model_class, trainer
"""
from __future__ import annotations

from typing import Callable

from models.backbone_names import BACKBONES, DEEPCTR_BACKBONES, _check, reads_history, supports_adaptor

__all__ = ["BACKBONES", "DEEPCTR_BACKBONES", "model_class", "reads_history", "supports_adaptor", "trainer"]


def trainer(name: str) -> Callable:
    """(data, variant, cfg, seed) -> FitResult for backbone `name`."""
    _check(name)
    if name in DEEPCTR_BACKBONES:
        def train(data, variant, cfg, seed):
            from models.train_deepctr import train_deepctr
            return train_deepctr(data, variant, cfg, seed, backbone=name)
        return train

    def train_lgbm(data, variant, cfg, seed):
        from models.train_lightgbm import train_lightgbm
        return train_lightgbm(data, variant, cfg, seed)
    return train_lgbm


def model_class(name: str) -> type:
    """The class whose `load(dir)` reads a saved model of backbone `name`."""
    _check(name)
    if name in DEEPCTR_BACKBONES:
        from models.train_deepctr import DeepCtrModel
        return DeepCtrModel
    from models.train_lightgbm import LightGBMModel
    return LightGBMModel
