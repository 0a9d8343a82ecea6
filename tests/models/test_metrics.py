"""Metrics against hand-computed small cases and against sklearn per-user loops."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.metrics import auc, ctr_metrics, gauc, logloss, per_user_auc


def test_auc_and_logloss_by_hand():
    y, p = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])
    # positive/negative pairs: (0.9>0.8) (0.9>0.1) (0.3<0.8) (0.3>0.1) -> 3/4
    assert auc(y, p) == pytest.approx(0.75)
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_gauc_by_hand():
    users = ["a", "a", "a", "b", "b", "c", "c", "d", "d"]
    y = [1, 0, 0, 1, 0, 1, 1, 1, 0]
    p = [0.9, 0.5, 0.1, 0.2, 0.8, 0.3, 0.4, 0.5, 0.5]
    # a: AUC 1 (3 rows); b: 0 (2 rows); c: one class -> skipped; d: tie -> 0.5 (2 rows)
    assert gauc(y, p, users) == pytest.approx((3 * 1 + 2 * 0 + 2 * 0.5) / 7)
    table = per_user_auc(y, p, users).set_index("user")
    assert sorted(table.index) == ["a", "b", "d"]
    assert ctr_metrics(y, p, users)["gauc_users"] == 3


def test_gauc_matches_sklearn_loop():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 30, 2000)
    y = rng.integers(0, 2, 2000)
    p = np.round(rng.random(2000), 2)  # rounding makes ties
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if len(np.unique(y[m])) == 2:
            num += m.sum() * roc_auc_score(y[m], p[m])
            den += m.sum()
    assert gauc(y, p, users) == pytest.approx(num / den, abs=1e-12)


def test_single_class_is_nan_not_crash():
    assert math.isnan(auc([1, 1], [0.2, 0.3]))
    assert math.isnan(gauc([1, 1], [0.2, 0.3], [1, 1]))
