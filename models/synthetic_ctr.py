"""Synthetic CTR data with a planted signal, for tests and benchmarks only (never a stand-in for MovieLens).

Items carry a latent vector z_i; the vector group `signal_group` is a noisy linear image of z_i, and the click
probability depends on z_i·w, so a model that sees that group can beat one that only sees ids and side features.
Other groups are images of independent latents (no signal); a user group named `user_signal_group` carries a
second, per-user signal. Rows get timestamps and each row the user's earlier items (`CtrSplit.history`).
Items are many and rows per item few by default, so item-id embeddings cannot simply memorise the effect (the cold-start case LLM item knowledge is meant for).

    from models.synthetic_ctr import make_ctr_data
    data = make_ctr_data(n_rows=6000, n_users=200, n_items=3000, dim=16)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from models.ctr_inputs import CtrData, CtrSplit
from models.history import recent_items

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Thriller"]


def _group_vectors(rng: np.random.Generator, latent: np.ndarray, dim: int, noise: float) -> np.ndarray:
    proj = rng.normal(size=(latent.shape[1], dim)) / np.sqrt(latent.shape[1])
    vec = latent @ proj + noise * rng.normal(size=(latent.shape[0], dim))
    return (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)  # unit norm, like MiniLM


def make_ctr_data(n_rows: int = 6000, n_users: int = 200, n_items: int = 3000, dim: int = 16, latent_dim: int = 8,
                  item_groups: Sequence[str] = ("item_signal_emb", "item_noise_emb"),
                  user_groups: Sequence[str] = (), signal_group: str = "item_signal_emb",
                  signal_strength: float = 2.5, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  seed: int = 0, user_signal_group: str | None = None, user_signal_strength: float = 1.5,
                  history_len: int = 20) -> CtrData:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1),
        "gender": rng.choice(["F", "M"], n_users),
        "age_bucket": rng.choice([18, 25, 35, 45, 56], n_users),
        "occupation": rng.choice([f"occ{i}" for i in range(21)], n_users),
    })
    genre_hot = (rng.random((n_items, len(GENRES))) < 0.25).astype(np.float32)
    year = rng.integers(1930, 2000, n_items)
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "year": year.astype(np.float64),
                          "year_bucket": (year // 10 * 10).astype(str),
                          "first_genre": [GENRES[int(np.argmax(r))] if r.any() else "unknown" for r in genre_hot]})
    for j, g in enumerate(GENRES):
        items[f"genre_{g}"] = genre_hot[:, j]

    z_item = {g: rng.normal(size=(n_items, latent_dim)) for g in item_groups}
    z_user = {g: rng.normal(size=(n_users, latent_dim)) for g in user_groups}
    item_vec = {g: _group_vectors(rng, z, dim, noise=0.1) for g, z in z_item.items()}
    user_vec = {g: _group_vectors(rng, z, dim, noise=0.1) for g, z in z_user.items()}
    w = rng.normal(size=latent_dim)
    signal = np.zeros(n_items) if signal_group not in z_item else z_item[signal_group] @ w / np.linalg.norm(w)

    u = rng.integers(0, n_users, n_rows)
    i = rng.integers(0, n_items, n_rows)
    user_bias = rng.normal(scale=0.5, size=n_users)
    logit = signal_strength * signal[i] + user_bias[u] + 0.3 * genre_hot[i, 0] - 0.3
    if user_signal_group in z_user:
        w_u = rng.normal(size=latent_dim)
        logit = logit + user_signal_strength * (z_user[user_signal_group] @ w_u / np.linalg.norm(w_u))[u]
    label = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.concat([users.iloc[u].reset_index(drop=True), items.iloc[i].reset_index(drop=True)], axis=1)
    frame["label"] = label
    vectors = {**{g: v[i] for g, v in item_vec.items()}, **{g: v[u] for g, v in user_vec.items()}}

    ts = rng.integers(0, 10 * n_rows, n_rows)
    hist, hist_len = recent_items(frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), ts,
                                  frame["user_id"].to_numpy(), ts, history_len)

    order = rng.permutation(n_rows)
    cuts = np.cumsum([int(f * n_rows) for f in fractions[:2]])
    parts = np.split(order, cuts)

    def split(rows: np.ndarray) -> CtrSplit:
        rows = np.sort(rows)
        return CtrSplit(frame.iloc[rows].reset_index(drop=True), {g: v[rows] for g, v in vectors.items()},
                        history=hist[rows], history_len=hist_len[rows])

    return CtrData(train=split(parts[0]), valid=split(parts[1]), test=split(parts[2]),
                   categorical=["user_id", "item_id", "gender", "age_bucket", "occupation", "year_bucket",
                                "first_genre"],
                   numeric=[f"genre_{g}" for g in GENRES] + ["year"])
