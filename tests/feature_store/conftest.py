"""Fixtures for feature_store tests: a temp store and small generated item-embedding tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store import Feature, FeatureStore, TableSpec

DIM = 8


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    return FeatureStore(tmp_path / "fs")


@pytest.fixture
def item_spec() -> TableSpec:
    return TableSpec(
        name="item_emb", entity="item", join_keys=("item_id",),
        features=(Feature("emb", "vector", dim=DIM), Feature("pop", "float32", default=-1.0),
                  Feature("title", "string", default="?")),
        description="test item vectors", owner="tests", tags={"stage": "test"},
    )


@pytest.fixture
def make_items():
    """make_items(n_items, n_times, seed, gen) -> DataFrame with one row per (item, time); emb[0] == gen."""
    def make(n_items: int = 20, n_times: int = 3, seed: int = 0, gen: float = 0.0) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        ids = np.repeat(np.arange(n_items), n_times)
        t = np.tile(np.arange(n_times) * 100, n_items)
        emb = rng.normal(size=(len(ids), DIM)).astype(np.float32)
        emb[:, 0] = gen
        return pd.DataFrame({
            "item_id": ids,
            "event_timestamp": pd.to_datetime(t, unit="s", utc=True),
            "created_timestamp": pd.to_datetime(t + 1, unit="s", utc=True),
            "emb": list(emb),
            "pop": rng.random(len(ids)),
            "title": [f"item {i}" for i in ids],
        })
    return make
