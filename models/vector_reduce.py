"""What every backbone (and KAR's adaptor) does to a text or taste vector group before reading it: L2-normalise,
then project onto a few principal directions fitted on TRAINING data only (train.vector_reduce).

Sentence vectors are 384 numbers of ~0.05 each whose directions, not lengths, carry the meaning; most of their
variance sits in a few dozen directions. A tree model given all 384 columns splits on noise, a small network's first
layer barely sees them next to id embeddings. So each group is reduced the same way for LLM text and raw text alike
(the twins stay like for like):

- item-keyed groups (item_knowledge_emb, item_raw_emb) are fitted on the distinct TRAINING items' vectors, each item
  once: a popular item must not decide the directions, and valid/test items never do;
- other groups (user profiles, history taste vectors, which change per row) on the training rows (a seeded sample
  of at most FIT_ROWS);
- all-zero vectors (no text) are left out of the fit: they are "missing", not a direction.

method "pca" keeps the top `dim` components; "whiten" also divides each by its standard deviation (equal scale per
direction); "none" passes the vectors through (after L2, if set). The fitted arrays are saved with the model
(`save_npz` / `load_npz`), so serving projects exactly as training did.

    reducers = fit_reducers(data, ["item_knowledge_emb"], cfg.vector_reduce, seed=0)
    x = reducers["item_knowledge_emb"].transform(split.vectors["item_knowledge_emb"])
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from sklearn.decomposition import PCA

from common.files import atomic_path
from models.taste import is_history_derived

FIT_ROWS = 50_000  # rows a non-item group is fitted on: the directions are stable long before that


@dataclass
class VectorReducer:
    """L2 (optional) then an affine projection, kept as plain arrays: saving needs no pickle and reload projects
    identically. `components` rows are the kept directions (already divided by their std when whitened)."""

    mean: np.ndarray        # (d,)
    components: np.ndarray  # (k, d)
    l2: bool = False

    @property
    def dim_in(self) -> int:
        return int(self.components.shape[1])

    @property
    def dim_out(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, vectors: np.ndarray, method: str, dim: int, l2: bool, seed: int) -> "VectorReducer":
        x = _l2(np.asarray(vectors, dtype=np.float64)) if l2 else np.asarray(vectors, dtype=np.float64)
        d = x.shape[1]
        if method == "none":
            return cls(np.zeros(d), np.eye(d), l2)
        x = x[np.any(x != 0, axis=1)]  # "no text" rows are not a direction
        k = max(1, min(dim, d, len(x)))
        if len(x) < 2:
            # nothing to learn a direction from (a group with no text in train): keep the first k coordinates
            return cls(np.zeros(d), np.eye(d)[:k], l2)
        # covariance_eigh: exact and fast when rows >> dims
        pca = PCA(n_components=k, svd_solver="covariance_eigh", random_state=seed).fit(x)
        comps = pca.components_.astype(np.float64)
        if method == "whiten":
            comps = comps / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))[:, None]
        elif method != "pca":
            raise ValueError(f"vector_reduce.method {method!r}: expected pca, whiten or none")
        return cls(pca.mean_.astype(np.float64), comps, l2)

    def first(self, k: int) -> "VectorReducer":
        """The same projection keeping only its first `k` directions (the top components)."""
        return VectorReducer(self.mean, self.components[:k], self.l2)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim_in:
            raise ValueError(f"vectors of shape {x.shape}: this reducer reads width {self.dim_in}")
        if self.l2:
            x = _l2(x)
        return (x - self.mean) @ self.components.T


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_rows(data, group: str, seed: int) -> np.ndarray:
    """The training vectors `group`'s reducer is fitted on: distinct training items for an item-keyed table
    vector, else (a seeded sample of) the training rows."""
    vectors = np.asarray(data.train.vectors[group])
    entry = next((e for e in getattr(data, "features", []) or [] if e.name == group), None)
    item_col = getattr(data, "item_col", None)
    if (entry is not None and entry.key == "item_id" and not is_history_derived(entry)
            and item_col in data.train.frame.columns):
        _, first = np.unique(data.train.frame[item_col].to_numpy(), return_index=True)
        return vectors[np.sort(first)]
    if len(vectors) > FIT_ROWS:
        rows = np.random.default_rng(seed).choice(len(vectors), FIT_ROWS, replace=False)
        return vectors[np.sort(rows)]
    return vectors


def fit_reducers(data, groups: Sequence[str], settings, seed: int) -> dict[str, VectorReducer]:
    """One reducer per vector group, fitted on training data only (settings: TrainConfig.vector_reduce)."""
    return {g: VectorReducer.fit(fit_rows(data, g, seed), settings.method, settings.dim, settings.l2, seed)
            for g in groups}


def common_width(reducers: dict[str, VectorReducer], groups: Sequence[str]) -> dict[str, VectorReducer]:
    """`reducers` with `groups` cut to their smallest width: KAR's shared experts read every knowledge type through
    the same weights, so their inputs must be equally wide (a catalogue of 20 items gives 20 directions at most,
    a per-row taste group 64)."""
    if not groups:
        return reducers
    k = min(reducers[g].dim_out for g in groups)
    return {g: (r.first(k) if g in groups else r) for g, r in reducers.items()}


def save_npz(path: Path, reducers: Mapping[str, VectorReducer]) -> None:
    arrays = {}
    for group, r in reducers.items():
        arrays[f"{group}/mean"] = r.mean
        arrays[f"{group}/components"] = r.components
        arrays[f"{group}/l2"] = np.asarray(r.l2)
    with atomic_path(Path(path), suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: Path, groups: Sequence[str]) -> dict[str, VectorReducer]:
    """The reducers `save_npz` wrote (a file from before L2 existed has no `l2` entry: it projected raw vectors)."""
    with np.load(path, allow_pickle=False) as z:
        return {g: VectorReducer(z[f"{g}/mean"], z[f"{g}/components"],
                                 bool(z[f"{g}/l2"]) if f"{g}/l2" in z.files else False) for g in groups}
