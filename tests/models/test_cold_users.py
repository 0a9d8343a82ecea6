"""What lets a deepctr backbone use text vectors for users it never saw: the shared 'unseen' id embedding is
trained (unseen-id dropout) and vectors are standardised per dimension (fit on train, saved in the feature map)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.feature_spec import Variant

pytestmark = pytest.mark.timeout(300)


def _unseen_user_row(model) -> torch.Tensor:
    emb = model.net.embedding_dict["user_id"].weight
    return emb[0].detach().clone()


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_unseen_user_embedding_trains_only_with_dropout(ctr_data, fast_cfg, dropout):
    from models.train_deepctr import DeepCtrModel, train_deepctr

    cfg = fast_cfg.model_copy(update={"unseen_id_dropout": dropout, "deepfm_epochs": 2, "patience": 5})
    init = DeepCtrModel.build_for(ctr_data, Variant(), cfg, "deepfm", seed=0)
    fit = train_deepctr(ctr_data, Variant(), cfg, seed=0, backbone="deepfm")
    moved = float((_unseen_user_row(fit.model) - _unseen_user_row(init)).abs().max())
    # without dropout no training row maps to id 0, so every cold user reads an embedding left at its init
    assert (moved > 1e-3) == (dropout > 0), moved


def test_vectors_are_standardised_with_train_statistics(ctr_data, fast_cfg, tmp_path):
    from models.train_deepctr import DeepCtrModel, train_deepctr

    variant = Variant(("item_signal_emb",))
    fit = train_deepctr(ctr_data, variant, fast_cfg.model_copy(update={"deepfm_epochs": 1}), 0, "deepfm")
    scaler = fit.model.feature_map["vector_scaler"]["item_signal_emb"]
    raw = np.asarray(ctr_data.train.vectors["item_signal_emb"], dtype=np.float64)
    # standardised after the reduction (L2 + projection fitted on train): the scaler holds the reduced statistics
    train = fit.model.reducers["item_signal_emb"].transform(raw)
    assert train.shape[1] == fast_cfg.vector_reduce.dim < raw.shape[1]
    np.testing.assert_allclose(scaler["mean"], train.mean(axis=0), rtol=1e-5, atol=1e-6)
    x = fit.model.input_matrix(ctr_data.train).numpy()
    block = x[:, -train.shape[1]:]  # the vector group is the last block of the matrix
    np.testing.assert_allclose(block.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(block.std(axis=0), 1, atol=1e-3)
    fit.model.save(tmp_path)
    np.testing.assert_allclose(DeepCtrModel.load(tmp_path).predict(ctr_data.valid), fit.model.predict(ctr_data.valid),
                               rtol=1e-6)
