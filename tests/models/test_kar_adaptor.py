"""KAR hybrid-expert adaptor: gates are softmaxes over shared + specific experts, it trains end to end, and with
planted item/user signal the adaptor variant clearly beats base (DeepFM and DIN)."""
import numpy as np
import pytest
import torch

from configs import TrainConfig
from models.feature_spec import resolve_variants
from models.kar_adaptor import HybridExpertAdaptor
from models.metrics import auc
from models.train_deepctr import train_deepctr


def test_experts_gates_and_shapes():
    kar = HybridExpertAdaptor([16, 16], n_shared=2, n_specific=3, hidden=32, out_dim=8)
    assert kar.shared.w1.shape == (2, 16, 32) and [b.w2.shape for b in kar.specific] == [(3, 32, 8)] * 2
    assert all(g.out_features == 5 for g in kar.gates)
    x = [torch.randn(4, 16), torch.randn(4, 16)]
    outs = kar(x)
    assert [o.shape for o in outs] == [(4, 8), (4, 8)]
    gate = torch.softmax(kar.gates[1](x[1]), -1)
    assert torch.allclose(gate.sum(-1), torch.ones(4))

    # the fused experts equal K separate MLPs d -> h -> o (shared first, then the type's own)
    def mlp(bank, k, v):
        return torch.relu(v @ bank.w1[k] + bank.b1[k]) @ bank.w2[k] + bank.b2[k]
    experts = torch.stack([mlp(kar.shared, k, x[1]) for k in range(2)]
                          + [mlp(kar.specific[1], k, x[1]) for k in range(3)], 1)
    assert torch.allclose(kar.expert_outputs(1, x[1]), experts, atol=1e-5)
    assert torch.allclose(outs[1], (gate.unsqueeze(-1) * experts).sum(1), atol=1e-5)


def test_shared_experts_need_equal_dims():
    with pytest.raises(ValueError, match="equal input dims"):
        HybridExpertAdaptor([16, 8], n_shared=1)
    assert HybridExpertAdaptor([16, 8], n_shared=0)([torch.randn(2, 16), torch.randn(2, 8)])[1].shape == (2, 32)


@pytest.fixture(scope="module")
def kar_fits(kar_data, fast_cfg):
    v = resolve_variants(TrainConfig(), ["base", "raw_text", "llm_kar"])
    return {(b, name): train_deepctr(kar_data, v[name], fast_cfg, 0, b)
            for b in ("deepfm", "din") for name in ("base", "raw_text", "llm_kar")}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backbone", ["deepfm", "din"])
def test_adaptor_beats_base_and_raw_text_on_planted_signal(kar_fits, kar_data, backbone):
    y = kar_data.test.frame["label"].to_numpy()
    score = {name: auc(y, kar_fits[(backbone, name)].model.predict(kar_data.test))
             for name in ("base", "raw_text", "llm_kar")}
    assert score["llm_kar"] - score["base"] > 0.1, score
    assert score["llm_kar"] - score["raw_text"] > 0.1, score


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_adaptor_weights_are_trained_and_saved(kar_fits, kar_data, tmp_path):
    from models.train_deepctr import DeepCtrModel

    model = kar_fits[("deepfm", "llm_kar")].model
    state = model.net.state_dict()
    assert any(k.startswith("adaptor.") for k in state)
    fresh = DeepCtrModel.build(model.feature_map, seed=0)
    moved = [k for k in state if k.startswith("adaptor.") and not torch.equal(state[k], fresh.net.state_dict()[k])]
    assert moved, "end-to-end training must update the adaptor"
    model.save(tmp_path)
    again = DeepCtrModel.load(tmp_path)
    assert np.array_equal(again.predict(kar_data.test), model.predict(kar_data.test))
    # the adaptor reads each group reduced (L2 + projection fitted on train, models/vector_reduce.py)
    assert model.feature_map["adaptor"]["groups"] == [{"name": "item_knowledge_emb", "dim": 8},
                                                     {"name": "user_profile_emb", "dim": 8}]
