"""The `train:` section of a run config: what `python -m models retrain` trains and how (read by models/ only)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from configs.strict import Strict as _Strict


class TrainConfig(_Strict):
    seeds: tuple[int, ...] = (0, 1, 2)
    threads: int = 2
    deepfm_epochs: int = 10
    deepfm_batch_size: int = 1024
    deepfm_lr: float = 1e-3
    embedding_dim: int = 16
    patience: int = 2
    lgbm_rounds: int = 1000
    lgbm_early_stopping: int = 50
    lgbm_pca_dim: int = 16
    # --- models/: backbones x variants x seeds of one retrain run (ablation names: models/variants.py) ---
    # default = 3 x 11 models, ~4.5 min on a quiet 2-core box at ML-100K; the full ablation adds llm_item,
    # llm_user (and dcnmix, autoint): see `python -m models --help`
    backbones: tuple[str, ...] = ("lightgbm", "deepfm", "din")
    variants: tuple[str, ...] = ("base", "raw_text", "llm", "llm_kar")
    history_len: int = Field(20, ge=1, description="DIN: the user's most recent items before each sample")
    sequence_backbones: tuple[str, ...] = Field(("din",), description="deepctr backbones fed the item history")
    din_att_activation: Literal["prelu", "Dice", "sigmoid", "relu"] = "prelu"
    kar_shared_experts: int = Field(1, ge=0)  # 1+1: adaptor within ~5% of DenseFeat speed (2+2: +45%)
    kar_specific_experts: int = Field(1, ge=1)
    kar_hidden: int = Field(128, ge=1)
    kar_out_dim: int = Field(32, ge=1)
    model_name: str = Field("ctr", pattern=r"^[A-Za-z0-9_.-]+$", description="registry name of the served model")
    promotion_margin: float = Field(0.001, description="challenger valid AUC must beat champion's by this")
