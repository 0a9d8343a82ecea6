"""Every deepctr backbone (DeepFM, DIN, DCN-Mix, AutoInt with the history under its own embedding name) trains,
saves a state_dict and reloads to identical predictions; bad inputs give one-line errors."""
import numpy as np
import pytest

from models.ctr_inputs import CtrSplit
from models.feature_spec import Variant
from models.train_deepctr import DeepCtrModel, train_deepctr


@pytest.fixture(scope="module")
def small(kar_data):
    def cut(s, n):
        return CtrSplit(s.frame.head(n), {g: v[:n] for g, v in s.vectors.items()}, s.history[:n],
                        s.history_len[:n])
    from models.ctr_inputs import CtrData
    return CtrData(cut(kar_data.train, 1500), cut(kar_data.valid, 400), cut(kar_data.test, 400),
                   kar_data.categorical, kar_data.numeric)


@pytest.mark.parametrize("backbone", ["deepfm", "din", "dcnmix", "autoint"])
def test_backbone_trains_and_reloads(small, fast_cfg, tmp_path, backbone):
    cfg = fast_cfg.model_copy(update={"deepfm_epochs": 1, "sequence_backbones": ("din", "autoint")})
    variant = Variant(("item_raw_emb",), ("item_knowledge_emb", "user_profile_emb"))
    fit = train_deepctr(small, variant, cfg, 0, backbone)
    fmap = fit.model.feature_map
    assert fmap["backbone"] == backbone and (fmap["history"] is not None) == (backbone in ("din", "autoint"))
    fit.model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feature_map.json", "model.pt", "vector_reduce.npz"]
    # every vector group (plain and adaptor) is read reduced: the network's widths are the reduced ones
    k = cfg.vector_reduce.dim
    assert [g["dim"] for g in fmap["vector_groups"]] == [k]
    assert [g["dim"] for g in fmap["adaptor"]["groups"]] == [k, k]
    assert fmap["vector_reduce"]["method"] == cfg.vector_reduce.method
    again = DeepCtrModel.load(tmp_path)
    pred = fit.model.predict(small.test)
    assert np.isfinite(pred).all() and np.array_equal(again.predict(small.test), pred)


def test_din_att_activation_is_configurable(small, fast_cfg):
    cfg = fast_cfg.model_copy(update={"deepfm_epochs": 1, "din_att_activation": "Dice"})
    fit = train_deepctr(small, Variant(), cfg, 0, "din")
    assert fit.model.feature_map["params"]["att_activation"] == "Dice"
    assert type(fit.model.net.attention.local_att.dnn.activation_layers[0]).__name__ == "Dice"


def test_din_without_history_is_a_clear_error(ctr_data, fast_cfg):
    from models.ctr_inputs import CtrData
    no_hist = CtrData(*[CtrSplit(s.frame, s.vectors) for s in ctr_data.splits().values()],
                      categorical=ctr_data.categorical, numeric=ctr_data.numeric)
    with pytest.raises(ValueError, match="needs each sample's item history"):
        train_deepctr(no_hist, Variant(), fast_cfg, 0, "din")


def test_lightgbm_refuses_adaptor(small, fast_cfg):
    from models.train_lightgbm import train_lightgbm
    with pytest.raises(ValueError, match="adaptor is a neural module"):
        train_lightgbm(small, Variant(adaptor_groups=("item_knowledge_emb",)), fast_cfg, 0)
