"""Shared fixtures for tests/models: small synthetic CTR data with a planted signal, a fast 1-thread config."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from augment.config import TrainConfig  # noqa: E402
from models.synthetic_ctr import make_ctr_data  # noqa: E402

VARIANTS = {"base": [], "noise": ["item_noise_emb"], "signal": ["item_signal_emb"]}


@pytest.fixture(scope="session")
def variants() -> dict[str, list[str]]:
    return VARIANTS


@pytest.fixture(scope="session")
def ctr_data():
    # far more items than rows: item ids cannot memorise the planted item effect, only the vectors carry it
    return make_ctr_data(n_rows=6000, n_users=200, n_items=20000, dim=16, latent_dim=8, seed=0)


@pytest.fixture(scope="session")
def fast_cfg() -> TrainConfig:
    return TrainConfig(seeds=(0,), threads=1, deepfm_epochs=4, deepfm_batch_size=256, deepfm_lr=5e-3,
                       embedding_dim=8, patience=2, lgbm_rounds=200, lgbm_early_stopping=20, lgbm_pca_dim=8)


@pytest.fixture(scope="session")
def variant_run(ctr_data, fast_cfg, tmp_path_factory):
    from models.train_variants import train_variants

    out = tmp_path_factory.mktemp("variants")
    return out, train_variants(ctr_data, VARIANTS, fast_cfg, out)
