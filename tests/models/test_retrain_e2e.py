"""retrain() on a tiny feature store with planted signal: ablation rows, registry layout with manifests pinning
table versions, gate decision in report and run.json, test predictions beside the results, report verdict says LLM
features beat their no-LLM twin and the best no-LLM variant beyond noise; a re-run with the same recipe keeps the champion."""
import json

import pandas as pd
import pytest

from configs import RunConfig
from feature_store import FeatureStore
from models.retrain import latest_versions, retrain

# real retrain runs (3 backbones x 4 variants) on a planted store: ~10-20 s each on a quiet 2-core box
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def run_rows(run_dir) -> dict:
    return json.loads((run_dir / "run.json").read_text())["rows"]


def _versions(cfg):
    return latest_versions(FeatureStore(cfg.workdir_path / "feature_store"), cfg)


def _cfg(work, **train):
    base = dict(seeds=(0,), threads=1, deepfm_epochs=3, deepfm_batch_size=256, deepfm_lr=5e-3, embedding_dim=8,
                lgbm_rounds=100, lgbm_early_stopping=10, vector_reduce={"dim": 4}, backbones=("lightgbm", "deepfm", "din"),
                variants=("base", "raw_text", "llm", "llm_kar"), kar_hidden=32, kar_out_dim=8, history_len=8)
    return RunConfig.model_validate({"workdir": str(work), "train": {**base, **train}})


def test_retrain_registry_gate_and_report(planted_workdir):
    cfg = _cfg(planted_workdir)
    out = retrain(cfg, _versions(cfg))
    rows = out["results"]
    assert len(rows) == 3 * 5 - 2  # + raw_kar, llm_kar's twin, trained with it; lightgbm skips both adaptors
    reg = planted_workdir / "registry" / "ctr" / out["run_id"]
    manifest = json.loads((reg / "din" / "llm_kar" / "seed=0" / "manifest.json").read_text())
    assert set(manifest["feature_tables"]) >= {"interaction_splits", "item_knowledge_emb", "user_profile_emb"}
    assert manifest["metrics"]["valid_auc"] > 0.5 and manifest["adaptor_groups"] == ["item_knowledge_emb",
                                                                                    "user_profile_emb"]
    assert "model.pt" in manifest["weights"] and not list(reg.rglob("*.pkl"))
    run = json.loads((reg / "run.json").read_text())
    assert run["promotion"]["promoted"] and run["promotion"]["reason"] == "no champion yet"
    text = open(out["report"]).read()
    first = text.splitlines()[0]  # the planted vectors help beyond noise, per test-user bootstrap on 1 seed
    assert first.startswith("**Verdict: LLM lift beyond noise — "), first
    assert "users bootstrap]" in first and "1 seed(s)" in first and "deepfm: " in first, first
    preds = pd.read_parquet(reg / "test_predictions.parquet")
    assert len(preds) == len(rows) * run_rows(reg)["test"]  # every model's test rows, beside results.parquet
    assert "## Promotion gate" in text and "PROMOTED" in text
    assert open(out["png"], "rb").read(4) == b"\x89PNG"

    # Same versions, settings and code: nothing new, so nothing is trained and the champion stays.
    trained = sorted(p.stat().st_mtime_ns for p in reg.rglob("manifest.json"))
    again = retrain(cfg, _versions(cfg))
    assert again["run_id"] == out["run_id"] and not again["promotion"]["promoted"]
    assert again["skipped"] == f"nothing new since run {out['run_id']}"
    assert again["results"] == out["results"] and again["report"] == out["report"]
    assert sorted(p.stat().st_mtime_ns for p in reg.rglob("manifest.json")) == trained  # no model rewritten
    stats = json.loads((planted_workdir / "stats" / "retrain.json").read_text())
    assert stats["skipped"].startswith("nothing new")
    # A changed train setting is a new recipe: it trains.
    changed = retrain(_cfg(planted_workdir, lgbm_rounds=60, backbones=("lightgbm",), variants=("base", "llm")),
                      _versions(cfg))
    assert changed["run_id"] != out["run_id"] and "skipped" not in changed


def test_cli_registry_ls_and_promote(planted_workdir, tmp_path, capsys):
    import yaml

    from models.__main__ import main

    cfg = _cfg(planted_workdir)
    out = retrain(cfg, _versions(cfg))
    assert main(["registry", "ls", "--root", str(planted_workdir)]) == 0
    listing = capsys.readouterr().out
    assert "llm_kar" in listing and "True" in listing
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    weak = f"{out['model_dir']}/lightgbm/base/seed=0"
    assert main(["promote", "--config", str(config), "--model-dir", weak]) == 3  # worse on valid: kept
    assert '"promoted": false' in capsys.readouterr().out


def test_champion_scores_a_serving_frame_built_from_pinned_tables(planted_workdir):
    """The serving path: pinned attribute tables + vectors + history -> same scores as in training."""
    import numpy as np

    from feature_store import FeatureStore
    from models.dataset_builder import attribute_frames, build_ctr_dataset
    from models.registry import load_champion

    cfg = _cfg(planted_workdir)
    retrain(cfg, _versions(cfg))
    model, manifest = load_champion(planted_workdir, "ctr")
    store = FeatureStore(planted_workdir / "feature_store")
    built = build_ctr_dataset(store, manifest["feature_tables"], history_len=8)
    test = built.data.test
    users, items = attribute_frames(store, manifest["feature_tables"])
    frame = test.frame[["user_id", "item_id"]].merge(users, on="user_id", how="left").merge(items, on="item_id",
                                                                                              how="left")
    pred = model.predict(frame, {g: test.vectors[g] for g in model.required_groups}, test.history,
                         test.history_len)
    assert np.allclose(pred, model.predict_split(test))
