"""Shared fixtures for tests/models: small synthetic CTR data with a planted signal, a fast 1-thread config, and a
tiny feature store (same table specs as the pipeline) whose LLM vectors carry the signal (planted by the
`planted_store` fixture of tests/conftest.py, which tests/serving uses too)."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from configs import TrainConfig  # noqa: E402
from models.feature_spec import Variant  # noqa: E402
from models.synthetic_ctr import make_ctr_data  # noqa: E402

VARIANTS = {"base": Variant(), "noise": Variant(("item_noise_emb",)), "signal": Variant(("item_signal_emb",))}


@pytest.fixture(scope="session")
def variants() -> dict[str, Variant]:
    return VARIANTS


@pytest.fixture(scope="session")
def ctr_data():
    # far more items than rows: item ids cannot memorise the planted item effect, only the vectors carry it
    return make_ctr_data(n_rows=6000, n_users=200, n_items=20000, dim=16, latent_dim=8, seed=0)


@pytest.fixture(scope="session")
def kar_data():
    """Item knowledge and user preference both carry signal; raw text is a noise control."""
    return make_ctr_data(n_rows=6000, n_users=300, n_items=20000, dim=16, latent_dim=8, seed=1,
                         item_groups=("item_knowledge_emb", "item_raw_emb"), user_groups=("user_profile_emb",),
                         signal_group="item_knowledge_emb", user_signal_group="user_profile_emb",
                         signal_strength=2.0, user_signal_strength=1.5)


@pytest.fixture(scope="session")
def fast_cfg() -> TrainConfig:
    return TrainConfig(seeds=(0,), threads=1, deepfm_epochs=4, deepfm_batch_size=256, deepfm_lr=5e-3,
                       embedding_dim=8, patience=2, lgbm_rounds=200, lgbm_early_stopping=20, vector_reduce={"dim": 8},
                       backbones=("lightgbm", "deepfm"), kar_hidden=32, kar_out_dim=8, history_len=10)


@pytest.fixture(scope="session")
def variant_run(ctr_data, fast_cfg, tmp_path_factory):
    from models.train_variants import train_variants

    out = tmp_path_factory.mktemp("variants")
    return out, train_variants(ctr_data, VARIANTS, fast_cfg, out)


@pytest.fixture(scope="session")
def planted_workdir(tmp_path_factory, planted_store):
    """A planted store (tests/conftest.py's planted_store: 150 users, 3000 items, 16-d vectors)."""
    work = tmp_path_factory.mktemp("work")
    planted_store(work / "feature_store")
    return work


TOPICS = ["action", "comedy", "drama", "romance"]


def publish_structured_tables(root, n_users: int, n_items: int, seed: int = 0) -> None:
    """Small item_tags / user_interest tables as augment/text/structured.py publishes them (accepted rows only: a few
    items and users are missing and take the table defaults)."""
    from feature_store import FeatureStore
    from feature_store import definitions as d

    rng = np.random.default_rng(seed)
    store = FeatureStore(root)
    item_ids = np.arange(1, n_items + 1)[rng.random(n_items) > 0.05]
    cats = rng.integers(0, len(TOPICS), len(item_ids))
    hots = [np.eye(len(TOPICS), dtype=np.float32)[c] + (rng.random(len(TOPICS)) > 0.8) for c in cats]
    tags = pd.DataFrame({"item_id": item_ids, "category": [TOPICS[c] for c in cats],
                         "category_index": cats.astype(np.int64) + 1, "tags": [[TOPICS[c]] for c in cats],
                         "topic_multi_hot": [np.minimum(h, 1).astype(np.float32) for h in hots], "flag": "ok"})
    splits = store.read_pandas("interaction_splits", store.resolve("interaction_splits"))
    cutoff = splits[splits.role == "history"].groupby("user_id")["timestamp"].max()
    users = cutoff.index.to_numpy()[rng.random(len(cutoff)) > 0.05]
    top = rng.integers(0, len(TOPICS), len(users))
    interest = pd.DataFrame({"user_id": users, "event_timestamp": cutoff.loc[users].to_numpy(),
                             "created_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
                             "top_topic": [TOPICS[t] for t in top], "topics": [[TOPICS[t]] for t in top],
                             "topic_weights": [np.eye(len(TOPICS), dtype=np.float32)[t] for t in top],
                             "era": "any", "cold": False, "flag": "ok"})
    recipe = {"structured-test": seed}
    store.publish(d.item_tags(len(TOPICS)), tags, recipe)
    store.publish(d.user_interest(len(TOPICS)), interest, recipe)


@pytest.fixture(scope="session")
def structured_workdir(tmp_path_factory, planted_store):
    """A planted store plus the structured tables (what generation.structured.enabled publishes)."""
    work = tmp_path_factory.mktemp("structured")
    planted_store(work / "feature_store", n_users=80, n_items=400, per_user=30)
    publish_structured_tables(work / "feature_store", n_users=80, n_items=400)
    return work
