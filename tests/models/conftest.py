"""Shared fixtures for tests/models: small synthetic CTR data with a planted signal, a fast 1-thread config, and a
tiny feature store (same table specs as the pipeline) whose LLM vectors carry the signal."""
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
                       embedding_dim=8, patience=2, lgbm_rounds=200, lgbm_early_stopping=20, lgbm_pca_dim=8,
                       backbones=("lightgbm", "deepfm"), kar_hidden=32, kar_out_dim=8, history_len=10)


@pytest.fixture(scope="session")
def variant_run(ctr_data, fast_cfg, tmp_path_factory):
    from models.train_variants import train_variants

    out = tmp_path_factory.mktemp("variants")
    return out, train_variants(ctr_data, VARIANTS, fast_cfg, out)


def publish_planted_store(root, n_users: int = 150, n_items: int = 3000, per_user: int = 40, dim: int = 16,
                          seed: int = 0, item_signal: float = 2.5, user_signal: float = 1.5) -> None:
    """A feature store with every table build_ctr_dataset reads; labels depend on latents that only the
    item_knowledge_emb / user_profile_emb vectors reveal (item_raw_emb is noise)."""
    from feature_store import FeatureStore
    from feature_store import definitions as d

    rng = np.random.default_rng(seed)
    store = FeatureStore(root)
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1), "gender": rng.choice(["F", "M"], n_users),
                          "age": rng.integers(15, 70, n_users),
                          "occupation": rng.choice(["a", "b", "c"], n_users), "zip_code": "00000"})
    genres = ["Action", "Comedy", "Drama"]
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "title": [f"t{i}" for i in range(n_items)],
                          "year": rng.integers(1950, 2000, n_items),
                          "genres": [list(rng.choice(genres, 1)) for _ in range(n_items)]})
    z_item, z_user = rng.normal(size=(n_items, 8)), rng.normal(size=(n_users, 8))
    w_i, w_u = rng.normal(size=8), rng.normal(size=8)
    u = np.repeat(np.arange(n_users), per_user)
    i = rng.integers(0, n_items, len(u))
    logit = item_signal * z_item[i] @ w_i / np.linalg.norm(w_i) + user_signal * z_user[u] @ w_u / np.linalg.norm(w_u)
    label = (rng.random(len(u)) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    ts = pd.Timestamp("1998-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**7, len(u)), unit="s")
    frame = pd.DataFrame({"user_id": u + 1, "item_id": i + 1, "timestamp": ts, "rating": label.astype(np.float32) * 4,
                          "label": label})
    frame = frame.sort_values(["user_id", "timestamp"]).drop_duplicates(["user_id", "item_id"])
    rank = frame.groupby("user_id").cumcount()
    frame["role"] = np.where(rank < 10, "history", "sample")
    frame["sampled"] = False
    user_split = pd.Series(rng.choice(["train", "valid", "test"], n_users, p=[0.7, 0.15, 0.15]),
                           index=np.arange(1, n_users + 1))
    frame["split"] = user_split.loc[frame["user_id"]].to_numpy()
    cutoff = frame[frame.role == "history"].groupby("user_id")["timestamp"].max()

    def emb(z: np.ndarray, noise: float) -> list:
        proj = rng.normal(size=(z.shape[1], dim))
        v = z @ proj + noise * rng.normal(size=(len(z), dim))
        return list((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))

    created = pd.Timestamp("2026-01-01", tz="UTC")
    item_emb = pd.DataFrame({"item_id": items.item_id, "event_timestamp": pd.Timestamp(0, tz="UTC"),
                             "created_timestamp": created, "emb": emb(z_item, 0.1), "encoder": "test",
                             "source_hash": "x"})
    user_emb = pd.DataFrame({"user_id": users.user_id, "event_timestamp": cutoff.reindex(users.user_id).to_numpy(),
                             "created_timestamp": created, "emb": emb(z_user, 0.1), "encoder": "test",
                             "source_hash": "x"})
    raw_emb = pd.DataFrame({"item_id": items.item_id, "emb": emb(rng.normal(size=(n_items, 8)), 0.1),
                            "encoder": "test", "source_hash": "x"})
    recipe = {"test": seed}
    store.publish(d.USERS, users, recipe)
    store.publish(d.ITEMS, items, recipe)
    store.publish(d.INTERACTION_SPLITS, frame.reset_index(drop=True), recipe)
    store.publish(d.item_knowledge_emb(dim), item_emb, recipe)
    store.publish(d.user_profile_emb(dim), user_emb, recipe)
    store.publish(d.item_raw_emb(dim), raw_emb, recipe)


@pytest.fixture(scope="session")
def planted_workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    publish_planted_store(work / "feature_store")
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
def structured_workdir(tmp_path_factory):
    """A planted store plus the structured tables (what generation.structured.enabled publishes)."""
    work = tmp_path_factory.mktemp("structured")
    publish_planted_store(work / "feature_store", n_users=80, n_items=400, per_user=30)
    publish_structured_tables(work / "feature_store", n_users=80, n_items=400)
    return work
