"""Retrain every (backbone, variant, seed) on one CtrData and score it: the experiment behind the report.

A variant is a `models.feature_spec.Variant` (feature groups fed plainly + vector groups behind KAR's adaptor),
e.g. `{"base": Variant(), "raw_text": Variant(("item_raw_emb",)), "llm_kar": Variant(adaptor_groups=...)}`.
Adaptor variants are skipped for LightGBM (the adaptor is a neural module). Every (backbone, variant) sees the
same splits and the same seeds, so per-seed differences are paired comparisons.
Early stopping and model selection look at valid only; test is scored once, with the selected model.
Each model lands in out_dir/<backbone>/<variant>/seed=<s>/ with its metrics.json; all rows go to
out_dir/results.parquet and are returned as a DataFrame. Every model's test predictions go to
out_dir/test_predictions.parquet (backbone, variant, seed, row, user_id, label, p; `row` indexes data.test), so
the report can pair two variants on the very same rows (a bootstrap over test users, models/report.py).

    from models.train_variants import train_variants
    results = train_variants(data, variants, cfg.train, Path("var/models"))
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from common.files import atomic_path, atomic_write_json
from configs import TrainConfig
from models.backbones import BACKBONES, supports_adaptor, trainer
from models.ctr_inputs import CtrData, CtrSplit, validate_ctr_data
from models.feature_spec import Variant, model_inputs
from models.metrics import ctr_metrics, json_safe

log = logging.getLogger(__name__)


PREDICTIONS = "test_predictions.parquet"


def score(model, split: CtrSplit, data: CtrData) -> tuple[dict[str, float], float, np.ndarray]:
    """Metrics of `model` on `split`, prediction throughput in rows/s, and the predictions."""
    started = time.perf_counter()
    pred = model.predict(split)
    seconds = time.perf_counter() - started
    y = split.frame[data.label].to_numpy()
    users = split.frame[data.user_col].to_numpy()
    return ctr_metrics(y, pred, users), len(split) / max(seconds, 1e-9), pred


def predictions_frame(data: CtrData, preds: Mapping[tuple[str, str, int], np.ndarray]) -> pd.DataFrame:
    """(backbone, variant, seed) -> test predictions, as one long table; float32 and categoricals keep ~100 models
    x 10k rows at a few MB."""
    test = data.test.frame
    n = len(test)
    keys = list(preds)
    return pd.DataFrame({
        "backbone": pd.Categorical(np.repeat([k[0] for k in keys], n)),
        "variant": pd.Categorical(np.repeat([k[1] for k in keys], n)),
        "seed": np.repeat(np.array([k[2] for k in keys], dtype=np.int32), n),
        "row": np.tile(np.arange(n, dtype=np.int32), len(keys)),
        "user_id": np.tile(test[data.user_col].to_numpy(), len(keys)),
        "label": np.tile(test[data.label].to_numpy().astype(np.int8), len(keys)),
        "p": np.concatenate([np.empty(0, np.float32), *(np.asarray(preds[k], np.float32) for k in keys)]),
    })


def train_variants(data: CtrData, variants: Mapping[str, Variant], cfg: TrainConfig,
                   out_dir: Path, backbones: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (backbone, variant, seed) with valid/test AUC, LogLoss, GAUC, timings and the model dir.
    `backbones` defaults to cfg.backbones."""
    backbones = tuple(cfg.backbones if backbones is None else backbones)
    unknown = [b for b in backbones if b not in BACKBONES]
    if unknown:
        raise ValueError(f"unknown backbone(s) {unknown}; known: {sorted(BACKBONES)}")
    if not variants:
        raise ValueError("no variants given")
    needed = set()
    for v in variants.values():
        inputs = model_inputs(data, v)
        needed.update([*inputs.groups, *inputs.adaptor_groups])
    validate_ctr_data(data, sorted(needed))
    out_dir = Path(out_dir)
    jobs = [(b, v, s) for b in backbones for v in variants for s in cfg.seeds
            if supports_adaptor(b) or not variants[v].adaptor_groups]
    rows, preds = [], {}
    for backbone, variant, seed in tqdm(jobs, desc="train variants", unit="model"):
        spec = variants[variant]
        log.info("training %s/%s seed=%d groups=%s", backbone, variant, seed, spec.describe())
        fit = trainer(backbone)(data, spec, cfg, seed)
        valid, _, _ = score(fit.model, data.valid, data)
        test, predict_rps, pred = score(fit.model, data.test, data)  # the only look at test
        preds[backbone, variant, seed] = pred.astype(np.float32)
        model_dir = out_dir / backbone / variant / f"seed={seed}"
        fit.model.save(model_dir)
        row = {
            "backbone": backbone, "variant": variant, "seed": seed, "groups": spec.describe(),
            "llm": spec.llm, "twin": spec.twin,
            **{f"valid_{k}": v for k, v in valid.items()}, **{f"test_{k}": v for k, v in test.items()},
            "best_iteration": fit.best_iteration, "n_iterations": fit.n_iterations,
            # ran every round / epoch allowed: the cap, not early stopping on valid, ended it
            "hit_cap": fit.n_iterations >= (cfg.lgbm_rounds if backbone == "lightgbm" else cfg.deepfm_epochs),
            "train_seconds": fit.train_seconds,
            # row passes per second: rows x epochs (DeepFM) or rows x boosting rounds (LightGBM)
            "rows_per_second": len(data.train) * fit.n_iterations / max(fit.train_seconds, 1e-9),
            "predict_rows_per_second": predict_rps,
            "n_train": len(data.train), "n_valid": len(data.valid), "n_test": len(data.test),
            "model_dir": str(model_dir),
        }
        atomic_write_json(model_dir / "metrics.json", json_safe({**row, "history": fit.history, "config": cfg.model_dump(mode="json")}))
        log.info("%s/%s seed=%d: valid_auc=%.4f test_auc=%.4f (%.1fs, best iteration %d)", backbone, variant,
                 seed, row["valid_auc"], row["test_auc"], fit.train_seconds, fit.best_iteration)
        rows.append(row)
    results = pd.DataFrame(rows)
    with atomic_path(out_dir / "results.parquet", suffix=".parquet") as tmp:
        results.to_parquet(tmp, index=False)
    with atomic_path(out_dir / PREDICTIONS, suffix=".parquet") as tmp:
        predictions_frame(data, preds).to_parquet(tmp, index=False)
    return results
