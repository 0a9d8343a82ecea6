"""Saved models reload (weights_only / text model / npz) and predict identically; unknown categoricals map to 0."""
import numpy as np
import pytest

from models.ctr_inputs import CtrSplit
from models.encoders import Vocabulary
from models.feature_spec import Variant
from models.train_deepctr import DeepCtrModel, train_deepctr
from models.train_lightgbm import LightGBMModel, train_lightgbm

GROUPS = Variant(("item_signal_emb", "item_noise_emb"))


@pytest.fixture(scope="module")
def fits(ctr_data, fast_cfg):
    return {"deepfm": train_deepctr(ctr_data, GROUPS, fast_cfg, 0, "deepfm"),
            "lightgbm": train_lightgbm(ctr_data, GROUPS, fast_cfg, seed=0)}


@pytest.mark.parametrize("backbone,loader", [("deepfm", DeepCtrModel.load), ("lightgbm", LightGBMModel.load)])
def test_reload_gives_identical_predictions(fits, ctr_data, tmp_path, backbone, loader):
    model = fits[backbone].model
    model.save(tmp_path)
    again = loader(tmp_path)
    before, after = model.predict(ctr_data.test), again.predict(ctr_data.test)
    assert before.shape == (len(ctr_data.test),)
    assert np.array_equal(before, after)


def test_deepfm_same_seed_same_model(ctr_data, fast_cfg, fits):
    again = train_deepctr(ctr_data, GROUPS, fast_cfg, 0, "deepfm")
    assert np.array_equal(again.model.predict(ctr_data.valid), fits["deepfm"].model.predict(ctr_data.valid))


def _with_unknowns(split: CtrSplit) -> CtrSplit:
    frame = split.frame.head(50).copy()
    frame.loc[:9, "user_id"] = 10_000_000  # never seen
    frame.loc[:9, "item_id"] = -5
    frame["gender"] = frame["gender"].astype(object)
    frame.loc[:9, "gender"] = "X"
    frame["occupation"] = frame["occupation"].astype(object)
    frame.loc[10:19, "occupation"] = None
    return CtrSplit(frame, {g: v[:50] for g, v in split.vectors.items()})


@pytest.mark.parametrize("backbone", ["deepfm", "lightgbm"])
def test_unknown_categoricals_do_not_crash(fits, ctr_data, backbone):
    pred = fits[backbone].model.predict(_with_unknowns(ctr_data.test))
    assert pred.shape == (50,) and np.isfinite(pred).all() and ((pred > 0) & (pred < 1)).all()


def test_vocabulary_maps_unknown_and_missing_to_zero(ctr_data):
    frame = _with_unknowns(ctr_data.test).frame
    vocab = Vocabulary.fit(ctr_data.train.frame["gender"], "gender")
    ids = vocab.encode(frame["gender"])
    assert (ids[:10] == 0).all() and (ids[10:] > 0).all() and ids.max() < vocab.size
    occ = Vocabulary.fit(ctr_data.train.frame["occupation"], "occupation").encode(frame["occupation"])
    assert (occ[10:20] == 0).all()
