"""Fixtures for tests/serving: a tiny feature store (the pipeline's table specs, planted signal) and a registry
trained on it by the real retrain stage, so the scorer is tested against the manifests production writes.

Some items are left out of item_knowledge_emb and some users out of user_profile_emb (LLM generation gaps), so the
'default vector' path is exercised for ids the attribute tables know."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

N_USERS, N_ITEMS, DIM = 60, 300, 8
NO_ITEM_VECTOR = (N_ITEMS - 1, N_ITEMS)  # in the items table, absent from item_knowledge_emb
NO_USER_VECTOR = (N_USERS,)              # in the users table, absent from user_profile_emb


def publish_tiny_store(root: Path, seed: int = 0) -> None:
    from feature_store import FeatureStore
    from feature_store import definitions as d

    rng = np.random.default_rng(seed)
    store = FeatureStore(root)
    users = pd.DataFrame({"user_id": np.arange(1, N_USERS + 1), "gender": rng.choice(["F", "M"], N_USERS),
                          "age": rng.integers(15, 70, N_USERS), "occupation": rng.choice(["a", "b", "c"], N_USERS),
                          "zip_code": "00000"})
    genres = ["Action", "Comedy", "Drama"]
    items = pd.DataFrame({"item_id": np.arange(1, N_ITEMS + 1), "title": [f"t{i}" for i in range(N_ITEMS)],
                          "year": rng.integers(1950, 2000, N_ITEMS),
                          "genres": [list(rng.choice(genres, rng.integers(1, 3), replace=False))
                                     for _ in range(N_ITEMS)]})
    z_item, z_user = rng.normal(size=(N_ITEMS, 4)), rng.normal(size=(N_USERS, 4))
    w_i, w_u = rng.normal(size=4), rng.normal(size=4)
    u = np.repeat(np.arange(N_USERS), 40)
    i = rng.integers(0, N_ITEMS, len(u))
    logit = 2.5 * z_item[i] @ w_i / np.linalg.norm(w_i) + 1.5 * z_user[u] @ w_u / np.linalg.norm(w_u)
    label = (rng.random(len(u)) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    ts = pd.Timestamp("1998-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**6, len(u)), unit="s")
    frame = pd.DataFrame({"user_id": u + 1, "item_id": i + 1, "timestamp": ts, "rating": label * 4.0,
                          "label": label}).sort_values(["user_id", "timestamp"]).drop_duplicates(["user_id", "item_id"])
    frame["role"] = np.where(frame.groupby("user_id").cumcount() < 10, "history", "sample")
    frame["sampled"] = False
    split = pd.Series(rng.choice(["train", "valid", "test"], N_USERS, p=[0.6, 0.2, 0.2]), index=users.user_id)
    frame["split"] = split.loc[frame["user_id"]].to_numpy()
    cutoff = frame[frame.role == "history"].groupby("user_id")["timestamp"].max()

    def emb(z: np.ndarray) -> list:
        v = z @ rng.normal(size=(z.shape[1], DIM)) + 0.1 * rng.normal(size=(len(z), DIM))
        return list((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))

    created = pd.Timestamp("2026-01-01", tz="UTC")
    item_emb = pd.DataFrame({"item_id": items.item_id, "event_timestamp": pd.Timestamp(0, tz="UTC"),
                             "created_timestamp": created, "emb": emb(z_item), "encoder": "t", "source_hash": "x"})
    user_emb = pd.DataFrame({"user_id": users.user_id, "event_timestamp": cutoff.reindex(users.user_id).to_numpy(),
                             "created_timestamp": created, "emb": emb(z_user), "encoder": "t", "source_hash": "x"})
    item_emb = item_emb[~item_emb.item_id.isin(NO_ITEM_VECTOR)]
    user_emb = user_emb[~user_emb.user_id.isin(NO_USER_VECTOR)]
    raw = pd.DataFrame({"item_id": items.item_id, "emb": emb(rng.normal(size=(N_ITEMS, 4))), "encoder": "t",
                        "source_hash": "x"})
    recipe = {"serving-test": seed}
    store.publish(d.USERS, users, recipe)
    store.publish(d.ITEMS, items, recipe)
    store.publish(d.INTERACTION_SPLITS, frame.reset_index(drop=True), recipe)
    store.publish(d.item_knowledge_emb(DIM), item_emb.reset_index(drop=True), recipe)
    store.publish(d.user_profile_emb(DIM), user_emb.reset_index(drop=True), recipe)
    store.publish(d.item_raw_emb(DIM), raw, recipe)


@pytest.fixture(scope="session")
def served_workdir(tmp_path_factory) -> Path:
    """<tmp>/feature_store + <tmp>/registry/ctr with lightgbm/{base,llm}, deepfm/{llm,llm_kar}, din/llm."""
    from configs import RunConfig
    from feature_store import FeatureStore
    from models.retrain import latest_versions, retrain

    work = tmp_path_factory.mktemp("serving")
    publish_tiny_store(work / "feature_store")
    train = dict(seeds=(0,), threads=1, deepfm_epochs=2, deepfm_batch_size=256, deepfm_lr=5e-3, embedding_dim=4,
                 lgbm_rounds=30, lgbm_early_stopping=10, lgbm_pca_dim=3, backbones=("lightgbm", "deepfm", "din"),
                 variants=("base", "llm", "llm_kar"), kar_hidden=8, kar_out_dim=4, history_len=5)
    cfg = RunConfig.model_validate({"workdir": str(work), "train": train})
    retrain(cfg, latest_versions(FeatureStore(work / "feature_store"), cfg))
    return work


@pytest.fixture(scope="session")
def model_dirs(served_workdir) -> dict[str, Path]:
    """'<backbone>/<variant>' -> saved model dir of the single run."""
    runs = [p for p in (served_workdir / "registry" / "ctr").iterdir() if (p / "run.json").is_file()]
    assert len(runs) == 1, runs
    return {f"{p.parent.parent.name}/{p.parent.name}": p for p in runs[0].glob("*/*/seed=0")}


@pytest.fixture(scope="session")
def vector_gaps() -> dict:
    """Ids the attribute tables know but the LLM vector tables lack (conftest modules are not importable)."""
    return {"items": NO_ITEM_VECTOR, "users": NO_USER_VECTOR}
