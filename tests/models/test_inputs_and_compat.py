"""Bad input gives a one-line error naming the place; deepctr_torch is imported without its PyPI version check."""
import sys

import numpy as np
import pytest

from models import deepctr_compat
from models.ctr_inputs import CtrData, CtrSplit, validate_ctr_data
from models.feature_spec import Variant
from models.train_variants import train_variants


def test_version_check_is_stubbed():
    assert sys.modules["deepctr_torch"].check_version.__module__ == deepctr_compat.__name__


def test_sparse_id_out_of_vocabulary_is_named():
    with pytest.raises(ValueError, match=r"feature 'item_id': row 1 id 7"):
        deepctr_compat.check_sparse_ids("item_id", np.array([1, 7]), vocabulary_size=5)


def _replace(data: CtrData, **splits) -> CtrData:
    return CtrData(**{**data.splits(), **splits}, categorical=data.categorical, numeric=data.numeric)


def test_missing_vector_group_is_named(ctr_data, fast_cfg, tmp_path):
    with pytest.raises(ValueError, match="vector group 'nope' not provided"):
        train_variants(ctr_data, {"x": Variant(("nope",))}, fast_cfg, tmp_path)


def test_bad_label_names_split_row_and_column(ctr_data):
    frame = ctr_data.valid.frame.copy()
    frame.loc[3, "label"] = 2
    bad = _replace(ctr_data, valid=CtrSplit(frame, ctr_data.valid.vectors))
    with pytest.raises(ValueError, match=r"CtrData.valid: row 3 column 'label'"):
        validate_ctr_data(bad)


def test_misaligned_vectors_are_rejected(ctr_data):
    vectors = {**ctr_data.test.vectors, "item_signal_emb": ctr_data.test.vectors["item_signal_emb"][:-1]}
    bad = _replace(ctr_data, test=CtrSplit(ctr_data.test.frame, vectors))
    with pytest.raises(ValueError, match="CtrData.test: vector group 'item_signal_emb' has shape"):
        validate_ctr_data(bad, ["item_signal_emb"])


def test_unknown_backbone(ctr_data, fast_cfg, tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        train_variants(ctr_data, {"base": Variant()}, fast_cfg, tmp_path, backbones=("xgboost",))
