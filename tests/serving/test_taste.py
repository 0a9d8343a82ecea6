"""Taste vectors and the taste-item match (models/taste.py): the maths, the dataset builder's per-label values
(checked against an independent pandas computation), and serving parity for models that read them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.timeout(600)


class FakeItemTable:
    """A stand-in for an OnlineTable keyed by item id (named as a fake: only lookup / vectors_at / spec)."""

    def __init__(self, keys, vectors):
        self.keys, self.mat = np.asarray(keys), np.asarray(vectors, dtype=np.float32)
        dim = self.mat.shape[1]
        self.spec = type("Spec", (), {"feature": lambda _self, c: type("F", (), {"dim": dim})()})()

    def lookup(self, ids):
        ids = np.asarray(ids)
        pos = np.searchsorted(self.keys, ids).clip(0, len(self.keys) - 1)
        return pos, self.keys[pos] != ids

    def vectors_at(self, column, pos, missing):
        out = self.mat[pos].copy()
        out[missing] = 0
        return out

    def get_vectors(self, column, ids):
        return self.vectors_at(column, *self.lookup(ids))


def test_taste_mean_recency_and_unknown_items():
    from models.taste import match, taste_vectors

    table = FakeItemTable([1, 2, 3], [[1, 0], [0, 1], [1, 1]])
    hist = np.array([[1, 2, 0], [3, 9, 1], [0, 0, 0]])  # row 1 holds an item without a vector (9)
    lens = np.array([2, 3, 0])
    mean = taste_vectors(hist, lens, table, "emb", "history_mean", 10)
    np.testing.assert_allclose(mean, [[0.5, 0.5], [1.0, 0.5], [0, 0]])
    recent = taste_vectors(hist[:1], lens[:1], table, "emb", "history_recency", 1.0)
    np.testing.assert_allclose(recent, [[1 / 3, 2 / 3]], rtol=1e-6)  # the newer item weighs twice the older
    cos = match(mean, np.array([[1, 1], [1, 0], [1, 0]], dtype=np.float32))
    np.testing.assert_allclose(cos, [1.0, 2 / np.sqrt(5), 0.0], rtol=1e-6)


def _liked_before(splits: pd.DataFrame, user, t) -> list[int]:
    ev = splits[(splits.user_id == user) & (splits.label == 1) & (splits.timestamp < t) & ~splits.sampled]
    return ev.sort_values("timestamp", kind="stable")["item_id"].tolist()[-50:]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, publish_serving_store) -> Path:
    work = tmp_path_factory.mktemp("taste")
    publish_serving_store(work / "feature_store")
    return work


def test_dataset_taste_is_the_mean_of_liked_items_before_each_label(tiny):
    from configs.train_config import DEFAULT_FEATURES
    from feature_store import FeatureStore
    from models.dataset_builder import build_ctr_dataset

    store = FeatureStore(tiny / "feature_store")
    entries = [e for e in DEFAULT_FEATURES if e.name in ("user_id", "item_id", "user_taste_knowledge",
                                                         "match_knowledge")]
    versions = {t: store.resolve(t, "latest") for t in ("interaction_splits", "users", "items",
                                                         "item_knowledge_emb")}
    data = build_ctr_dataset(store, versions, entries).data
    splits = store.read_pandas("interaction_splits", versions["interaction_splits"])
    items = store.read_pandas("item_knowledge_emb", versions["item_knowledge_emb"]).set_index("item_id")["emb"].map(
        lambda v: np.asarray(v, dtype=np.float64))
    checked = 0
    for part in (data.train, data.test):
        for r in range(0, len(part), max(1, len(part) // 25)):
            row = part.frame.iloc[r]
            liked = [i for i in _liked_before(splits, row.user_id, row.timestamp) if i in items.index]
            want = np.mean([items[i] for i in liked], axis=0) if liked else np.zeros(8)
            np.testing.assert_allclose(part.vectors["user_taste_knowledge"][r], want, rtol=1e-5, atol=1e-6)
            target = np.asarray(items[row.item_id]) if row.item_id in items.index else np.zeros(8)
            denom = np.linalg.norm(want) * np.linalg.norm(target)
            np.testing.assert_allclose(row.match_knowledge, want @ target / denom if denom else 0.0, atol=1e-5)
            checked += 1
    assert checked > 30 and data.taste == {"len": 50, "half_life": 10.0}


@pytest.fixture(scope="module")
def taste_models(tiny) -> dict:
    from configs import RunConfig
    from feature_store import FeatureStore
    from models.retrain import latest_versions, retrain

    train = dict(seeds=(0,), threads=1, deepfm_epochs=2, deepfm_batch_size=256, deepfm_lr=5e-3, embedding_dim=4,
                 lgbm_rounds=30, lgbm_early_stopping=10, vector_reduce={"dim": 3}, backbones=("lightgbm", "deepfm", "din"),
                 variants=("base", "llm_taste", "llm_kar_taste"), kar_hidden=8, kar_out_dim=4, history_len=5)
    cfg = RunConfig.model_validate({"workdir": str(tiny), "train": train})
    retrain(cfg, latest_versions(FeatureStore(tiny / "feature_store"), cfg))
    run = next(p for p in (tiny / "registry" / "ctr").iterdir() if (p / "run.json").is_file())
    return {f"{p.parent.parent.name}/{p.parent.name}": p for p in run.glob("*/*/seed=0")}


@pytest.mark.parametrize("key", ["lightgbm/llm_taste", "deepfm/llm_kar_taste", "din/llm_taste"])
def test_serving_computes_taste_and_match_as_training_does(key, tiny, taste_models):
    from feature_store import FeatureStore
    from models.serving.scorer import Scorer

    scorer = Scorer.from_model_dir(taste_models[key], tiny / "feature_store")
    store = FeatureStore(tiny / "feature_store")
    pins = scorer.model.feature_tables
    splits = store.read_pandas("interaction_splits", pins["interaction_splits"])
    items = store.read_pandas("item_knowledge_emb", pins["item_knowledge_emb"]).set_index("item_id")["emb"].map(
        lambda v: np.asarray(v, dtype=np.float64))
    users = store.read_pandas("users", pins["users"]).set_index("user_id")
    now = splits.timestamp.max() + pd.Timedelta(seconds=1)
    candidates = np.array([1, 2, 3, 50, 299, 10**9])  # 299: no vector; 10**9: unknown item

    def expected(user, liked: list[int], hist_items: list[int]) -> np.ndarray:
        known = [i for i in liked if i in items.index]
        taste = np.mean([items[i] for i in known], axis=0).astype(np.float32) if known else np.zeros(8, np.float32)
        tv = np.stack([np.asarray(items[i]) if i in items.index else np.zeros(8) for i in candidates])
        cos = tv @ taste / np.maximum(np.linalg.norm(tv, axis=1) * np.linalg.norm(taste), 1e-12)
        rows = pd.DataFrame({"user_id": user, "item_id": candidates, "match_knowledge": cos})
        for c in scorer.snapshot.users.columns.drop("user_id"):
            rows[c] = scorer.snapshot.users.set_index("user_id")[c].get(user)
        item_cols = scorer.snapshot.items.set_index("item_id")
        for c in item_cols.columns:
            rows[c] = item_cols[c].reindex(candidates).to_numpy()
        vectors = {"user_taste_knowledge": np.repeat(taste[None], len(candidates), 0),
                   "item_knowledge_emb": tv.astype(np.float32),
                   "user_profile_emb": scorer.snapshot.vectors("user_id", np.repeat(user, len(candidates)),
                                                               ["user_profile_emb"])["user_profile_emb"]}
        hist = lens = None
        if scorer.model.needs_history:
            tail = hist_items[-5:]
            hist = np.zeros((len(candidates), 5), dtype=np.int64)
            hist[:, :len(tail)] = tail
            lens = np.full(len(candidates), len(tail))
        return scorer.model.predict(rows, vectors, history=hist, history_len=lens)

    for user in users.index[:3]:
        ev = splits[splits.user_id == user].sort_values("timestamp", kind="stable")
        got = scorer.score(int(user), candidates)
        want = expected(user, _liked_before(splits, user, now), ev["item_id"].tolist())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{key} user {user}")
    # a request-supplied history is the taste of a user the tables never saw
    got = scorer.score(10**6, candidates, context={"history": [3, 7, 299]})
    np.testing.assert_allclose(got, expected(10**6, [3, 7, 299], [3, 7, 299]), rtol=1e-5, atol=1e-6)
