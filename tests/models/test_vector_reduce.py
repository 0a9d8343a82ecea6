"""models/vector_reduce.py: L2 + PCA / whitening fitted on training items only, saved and reloaded exactly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs.train_config import FeatureEntry, VectorReduce
from models.ctr_inputs import CtrSplit
from models.vector_reduce import VectorReducer, fit_reducers, fit_rows, load_npz, save_npz

pytestmark = pytest.mark.timeout(60)


class _Data:
    """The slice of CtrData the reducers read (a fake: train only)."""

    def __init__(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray], features):
        self.train = CtrSplit(frame, vectors)
        self.features = tuple(features)
        self.item_col = "item_id"


def _item_entry(name: str) -> FeatureEntry:
    return FeatureEntry(name=name, type="vector", source="item_knowledge_emb", column="emb", key="item_id")


def test_item_groups_are_fitted_on_each_training_item_once():
    rng = np.random.default_rng(0)
    item_vecs = rng.normal(size=(5, 8))
    items = np.array([0] * 95 + [1, 2, 3, 4, 0])  # item 0 is 96% of the rows
    data = _Data(pd.DataFrame({"item_id": items}), {"g": item_vecs[items]}, [_item_entry("g")])
    rows = fit_rows(data, "g", seed=0)
    assert rows.shape == (5, 8)
    np.testing.assert_allclose(np.sort(rows, axis=0), np.sort(item_vecs, axis=0))


def test_other_groups_are_fitted_on_rows():
    vecs = np.random.default_rng(1).normal(size=(40, 6))
    taste = FeatureEntry(name="t", type="vector", source="item_knowledge_emb", column="emb", key="user_id",
                         transform="history_mean")
    data = _Data(pd.DataFrame({"item_id": np.zeros(40, dtype=int)}), {"t": vecs}, [taste])
    assert fit_rows(data, "t", seed=0).shape == (40, 6)


@pytest.mark.parametrize("method", ["pca", "whiten"])
def test_reduces_to_dim_and_ignores_missing_text(method):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 16)) * np.linspace(5, 0.1, 16)  # variance falls along the coordinates
    with_missing = np.vstack([x, np.zeros((300, 16))])  # rows with no text: zero vectors
    r = VectorReducer.fit(with_missing, method, dim=4, l2=False, seed=0)
    clean = VectorReducer.fit(x, method, dim=4, l2=False, seed=0)
    np.testing.assert_allclose(r.mean, clean.mean)  # zeros did not move the centre
    out = r.transform(x)
    assert out.shape == (200, 4)
    if method == "whiten":
        np.testing.assert_allclose(out.std(axis=0, ddof=1), 1.0, rtol=1e-6)
    else:
        assert out.std(axis=0)[0] > out.std(axis=0)[3]  # the top component first


def test_l2_makes_length_irrelevant():
    x = np.random.default_rng(3).normal(size=(50, 8))
    r = VectorReducer.fit(x, "pca", dim=3, l2=True, seed=0)
    np.testing.assert_allclose(r.transform(x * 7.0), r.transform(x), atol=1e-12)
    plain = VectorReducer.fit(x, "pca", dim=3, l2=False, seed=0)
    assert not np.allclose(plain.transform(x * 7.0), plain.transform(x))


def test_none_passes_through_and_wrong_width_is_an_error():
    x = np.random.default_rng(4).normal(size=(10, 5))
    r = VectorReducer.fit(x, "none", dim=2, l2=False, seed=0)
    np.testing.assert_allclose(r.transform(x), x)
    with pytest.raises(ValueError, match="width 5"):
        r.transform(np.zeros((3, 4)))


def test_save_load_round_trip_and_old_files(tmp_path):
    x = np.random.default_rng(5).normal(size=(30, 6))
    data = _Data(pd.DataFrame({"item_id": np.arange(30)}), {"g": x}, [_item_entry("g")])
    reducers = fit_reducers(data, ["g"], VectorReduce(method="whiten", dim=3), seed=0)
    save_npz(tmp_path / "r.npz", reducers)
    back = load_npz(tmp_path / "r.npz", ["g"])
    np.testing.assert_array_equal(back["g"].transform(x), reducers["g"].transform(x))
    assert back["g"].l2 is True
    # a pca.npz saved before L2 existed (mean + components only) projected raw vectors: it still does
    np.savez(tmp_path / "old.npz", **{"g/mean": reducers["g"].mean, "g/components": reducers["g"].components})
    old = load_npz(tmp_path / "old.npz", ["g"])["g"]
    assert old.l2 is False
    np.testing.assert_allclose(old.transform(x), (x - old.mean) @ old.components.T)


def test_adaptor_groups_are_cut_to_one_width():
    """KAR's shared experts need equal widths: a 20-item catalogue gives 20 directions, a per-row group 64."""
    from models.vector_reduce import common_width

    rng = np.random.default_rng(6)
    items = VectorReducer.fit(rng.normal(size=(20, 96)), "pca", dim=64, l2=True, seed=0)
    rows = VectorReducer.fit(rng.normal(size=(500, 96)), "pca", dim=64, l2=True, seed=0)
    assert (items.dim_out, rows.dim_out) == (20, 64)
    cut = common_width({"item": items, "taste": rows, "other": rows}, ["item", "taste"])
    assert [cut[g].dim_out for g in ("item", "taste", "other")] == [20, 20, 64]
    x = rng.normal(size=(5, 96))
    np.testing.assert_allclose(cut["taste"].transform(x), rows.transform(x)[:, :20])  # the top 20 directions
