"""The variant that sees the signal-carrying vector group must clearly beat base, for both backbones."""
import json

import pandas as pd
import pytest

# trains 2 backbones x 3 variants on 6k rows (~5 s)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_signal_variant_beats_base_for_both_backbones(variant_run):
    _, results = variant_run
    auc = results.set_index(["backbone", "variant"])["test_auc"]
    for backbone in ("lightgbm", "deepfm"):
        assert auc[(backbone, "signal")] - auc[(backbone, "base")] > 0.1, results
        assert auc[(backbone, "signal")] - auc[(backbone, "noise")] > 0.1, results
        # the planted signal is visible on valid too, where selection happens
        valid = results.set_index(["backbone", "variant"])["valid_auc"]
        assert valid[(backbone, "signal")] > valid[(backbone, "base")] + 0.1


def test_results_rows_and_saved_artefacts(variant_run, ctr_data, variants):
    out, results = variant_run
    assert len(results) == 2 * len(variants)
    expected = {"valid_auc", "valid_logloss", "valid_gauc", "test_auc", "test_logloss", "test_gauc",
                "best_iteration", "train_seconds", "rows_per_second", "n_train", "n_valid", "n_test", "model_dir"}
    assert expected <= set(results.columns)
    assert (results["n_train"] == len(ctr_data.train)).all()
    assert (results["best_iteration"] <= results["n_iterations"]).all()
    for row in results.itertuples():
        metrics = json.loads((out / row.backbone / row.variant / "seed=0" / "metrics.json").read_text())
        assert metrics["test_auc"] == row.test_auc
        assert metrics["history"], "per-iteration valid history is recorded"
    assert (out / "lightgbm" / "signal" / "seed=0" / "model.txt").exists()
    assert (out / "lightgbm" / "signal" / "seed=0" / "pca.npz").exists()
    assert (out / "deepfm" / "signal" / "seed=0" / "model.pt").exists()
    assert pd.read_parquet(out / "results.parquet").equals(results)
