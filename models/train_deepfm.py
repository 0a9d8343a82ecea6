"""DeepFM on a CtrData variant: the first backbone, now one case of models/train_deepctr.py (kept for callers).

    from models.train_deepfm import train_deepfm, DeepFMModel
    fit = train_deepfm(data, ["item_knowledge_emb"], cfg, seed=0); fit.model.save(dir); DeepFMModel.load(dir)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from configs import TrainConfig
from models.ctr_data import CtrData
from models.fit_result import FitResult
from models.train_deepctr import DeepCtrModel, DeepCtrParams, seed_everything  # noqa: F401
from models.variants import Variant

DeepFMModel = DeepCtrModel
DeepFMParams = DeepCtrParams


def train_deepfm(data: CtrData, groups: Variant | Sequence[str], cfg: TrainConfig, seed: int,
                 params: DeepCtrParams | None = None) -> FitResult:
    from models.train_deepctr import train_deepctr

    return train_deepctr(data, groups, cfg, seed, backbone="deepfm", params=params)


def load_deepfm(model_dir: Path) -> DeepCtrModel:
    return DeepCtrModel.load(model_dir)
