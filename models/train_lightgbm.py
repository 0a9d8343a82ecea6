"""LightGBM on a CtrData variant: ids as numeric features, vector groups reduced by PCA fitted on train only.

- user/item ids -> their train vocabulary rank as a NUMERIC feature (NaN when unseen): categorical ids trained 8x
  slower, predicted 20x slower and scored lower AUC in our probe (docs/architecture.md).
- other categoricals -> vocabulary codes (0 = unseen) declared as LightGBM categorical features.
- numeric -> as is (trees need no scaling); each vector group -> L2 + `k` PCA components fitted on TRAINING items
  (cfg.vector_reduce, models/vector_reduce.py: the same reduction every backbone applies).
- early stopping on valid AUC; the saved model holds only the trees up to the best iteration.
Saved as `model.txt` (LightGBM text model) + `pca.npz` (mean/components per group, no pickle) + `feature_map.json`.

    from models.train_lightgbm import train_lightgbm, LightGBMModel
    fit = train_lightgbm(data, ["item_raw_emb"], cfg, seed=0); fit.model.save(dir); LightGBMModel.load(dir)
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd

from common.files import atomic_path, atomic_write_json
from configs import TrainConfig
from models.ctr_inputs import CtrData, CtrSplit, validate_ctr_data
from models.encoders import NumericScaler, Vocabulary
from models.feature_spec import Variant, common_feature_map, model_inputs
from models.fit_result import FitResult
from models.vector_reduce import VectorReducer, fit_reducers, load_npz, save_npz

log = logging.getLogger(__name__)
FEATURE_MAP = "feature_map.json"
BOOSTER = "model.txt"
PCA_FILE = "pca.npz"


class LightGBMModel:
    def __init__(self, feature_map: dict, booster: lgb.Booster, pcas: dict[str, VectorReducer]):
        self.feature_map = feature_map
        self.booster = booster
        self.pcas = pcas
        self.vocabs = {v["column"]: Vocabulary.from_json(v) for v in feature_map["vocabularies"]}

    def encode(self, split: CtrSplit) -> np.ndarray:
        """The float64 design matrix (columns in `input_layout` order)."""
        return np.ascontiguousarray(design_matrix(split, self.feature_map, self.vocabs, self.pcas), dtype=np.float64)

    def input_layout(self) -> list[tuple[str, int]]:
        """(model column or vector group, width) of each block of `encode`'s output, in order."""
        state = self.feature_map["backbone_state"]
        out = [(c, 1) for c in state["id_columns"] + state["categorical_columns"] + self.feature_map["numeric"]]
        return out + [(g["name"], int(g["pca_dim"])) for g in state["pca"]]

    def forward_fn(self, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
        """encode()d rows -> click probabilities."""
        booster = self.booster
        return lambda x: np.asarray(booster.predict(x, num_threads=threads), dtype=np.float64)

    @property
    def required_groups(self) -> list[str]:
        return [g["name"] for g in self.feature_map["vector_groups"]]

    def predict(self, split: CtrSplit) -> np.ndarray:
        return self.forward_fn(int(self.feature_map["backbone_state"]["threads"]))(self.encode(split))

    def save(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(model_dir / BOOSTER) as tmp:
            self.booster.save_model(str(tmp))
        save_npz(model_dir / PCA_FILE, self.pcas)
        atomic_write_json(model_dir / FEATURE_MAP, self.feature_map)

    @classmethod
    def load(cls, model_dir: Path) -> "LightGBMModel":
        model_dir = Path(model_dir)
        feature_map = json.loads((model_dir / FEATURE_MAP).read_text())
        booster = lgb.Booster(model_file=str(model_dir / BOOSTER))
        pcas = load_npz(model_dir / PCA_FILE, [g["name"] for g in feature_map["vector_groups"]])
        return cls(feature_map, booster, pcas)


def design_matrix(split: CtrSplit, feature_map: dict, vocabs: dict[str, Vocabulary],
                  pcas: dict[str, VectorReducer]) -> np.ndarray:
    frame = split.frame
    state = feature_map["backbone_state"]
    blocks = []
    for col in state["id_columns"]:
        codes = vocabs[col].encode(frame[col]).astype(np.float64)
        codes[codes == 0] = np.nan  # unseen id: LightGBM's missing-value branch, not a fake neighbour
        blocks.append(codes[:, None])
    for col in state["categorical_columns"]:
        blocks.append(vocabs[col].encode(frame[col]).astype(np.float64)[:, None])
    if feature_map["numeric"]:
        numeric = frame[feature_map["numeric"]].apply(pd.to_numeric, errors="coerce")
        blocks.append(numeric.to_numpy(dtype=np.float64))
    for spec in feature_map["vector_groups"]:
        group = spec["name"]
        if group not in split.vectors:
            raise ValueError(f"vector group {group!r} missing from split (have {sorted(split.vectors)})")
        vec = np.asarray(split.vectors[group])
        if vec.shape != (len(frame), spec["dim"]):
            raise ValueError(f"vector group {group!r}: shape {vec.shape}, model expects ({len(frame)}, {spec['dim']})")
        blocks.append(pcas[group].transform(vec))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))


def make_feature_map(data: CtrData, variant: Variant, pcas: dict[str, VectorReducer], cfg: TrainConfig,
                     fit_pcas: Callable | None = None) -> dict:
    inputs = model_inputs(data, variant)
    id_cols = [c for c in data.id_columns if c in inputs.categorical]
    cat_cols = [c for c in inputs.categorical if c not in id_cols]
    groups = inputs.groups
    names = list(id_cols) + cat_cols + list(inputs.numeric)
    for g in groups:
        names += [f"{g}__pc{i}" for i in range(pcas[g].components.shape[0])]
    fmap = common_feature_map(
        data, inputs, "lightgbm", None, NumericScaler.fit(data.train.frame, list(inputs.numeric)).to_json(),
        [Vocabulary.fit(data.train.frame[c], c).to_json() for c in inputs.categorical])
    fmap["params"] = cfg.lightgbm.model_dump(mode="json")
    fmap["backbone_state"] = {
        "id_columns": id_cols, "categorical_columns": cat_cols,
        "pca": [{"name": g, "dim": int(pcas[g].components.shape[1]), "pca_dim": int(pcas[g].components.shape[0])}
                for g in groups],
        "feature_names": names, "threads": int(cfg.threads)}
    return fmap


def train_lightgbm(data: CtrData, variant: Variant, cfg: TrainConfig, seed: int) -> FitResult:
    """Boost on data.train with early stopping on valid AUC; the returned model is cut at the best iteration.
    Booster settings: cfg.lightgbm."""
    if variant.adaptor_groups:
        raise ValueError("lightgbm: the KAR adaptor is a neural module; use a deepctr backbone for "
                         f"{variant.describe()}")
    inputs = model_inputs(data, variant)
    groups = list(inputs.groups)
    validate_ctr_data(data, groups)
    started = time.perf_counter()
    pcas = fit_reducers(data, groups, cfg.vector_reduce, seed)
    feature_map = make_feature_map(data, variant, pcas, cfg)
    vocabs = {v["column"]: Vocabulary.from_json(v) for v in feature_map["vocabularies"]}
    x_train = design_matrix(data.train, feature_map, vocabs, pcas)
    x_valid = design_matrix(data.valid, feature_map, vocabs, pcas)
    y_train = data.train.frame[data.label].to_numpy(dtype=np.float64)
    y_valid = data.valid.frame[data.label].to_numpy(dtype=np.float64)
    state = feature_map["backbone_state"]
    names, cats = state["feature_names"], state["categorical_columns"]
    dtrain = lgb.Dataset(x_train, y_train, feature_name=names, categorical_feature=cats, free_raw_data=False,
                         params={"verbose": -1})
    dvalid = lgb.Dataset(x_valid, y_valid, reference=dtrain)
    booster_params = {
        "objective": "binary", "metric": "auc", "verbose": -1, "seed": seed, "deterministic": True,
        "force_col_wise": True, "num_threads": int(cfg.threads), **cfg.lightgbm.model_dump(),
    }
    evals: dict = {}
    booster = lgb.train(booster_params, dtrain, num_boost_round=cfg.lgbm_rounds, valid_sets=[dvalid],
                        valid_names=["valid"],
                        callbacks=[lgb.early_stopping(cfg.lgbm_early_stopping, verbose=False),
                                   lgb.record_evaluation(evals)])
    valid_auc = evals.get("valid", {}).get("auc", [])
    # lgb.train already cut the returned booster at best_iteration, so count rounds from the eval record
    rounds_run = len(valid_auc) or booster.current_iteration()
    best = booster.best_iteration or rounds_run
    # keep only the selected trees, so predict()/save()/reload all mean the same model
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    history = [{"round": i + 1, "valid_auc": v} for i, v in enumerate(valid_auc)]
    log.info("lightgbm seed=%d: best round %d of %d, valid_auc=%.4f", seed, best, rounds_run,
             history[best - 1]["valid_auc"] if history else float("nan"))
    return FitResult(model=LightGBMModel(feature_map, booster, pcas), best_iteration=best, n_iterations=rounds_run,
                     train_seconds=time.perf_counter() - started, history=history)


def load_lightgbm(model_dir: Path) -> LightGBMModel:
    return LightGBMModel.load(model_dir)
