"""DeepFM (deepctr-torch) on a CtrData variant: our own epoch loop, early stopping on valid AUC, best weights kept.

Features: categorical -> SparseFeat (ids 1..n from train, 0 unknown), numeric -> DenseFeat(dim 1, standardised on
train), each vector group -> DenseFeat(group, dimension=d). The same columns feed the linear and deep parts.
Saved as `model.pt` (state_dict) + `feature_map.json` (columns, vocabularies, scaler, groups, hyper-parameters);
`DeepFMModel.load(dir)` rebuilds it with `torch.load(..., weights_only=True)` and predicts identically.

    from models.train_deepfm import train_deepfm, DeepFMModel
    fit = train_deepfm(data, ["item_knowledge_emb"], cfg, seed=0); fit.model.save(dir)
"""
from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import json
import numpy as np
import torch
import torch.nn.functional as F

from augment.config import TrainConfig
from models import deepctr_compat as dc
from models.atomic import atomic_path, write_json
from models.ctr_data import CtrData, CtrSplit, validate_ctr_data
from models.ctr_features import NumericScaler, Vocabulary
from models.fit_result import FitResult
from models.metrics import auc, logloss

log = logging.getLogger(__name__)
FEATURE_MAP = "feature_map.json"
WEIGHTS = "model.pt"


@dataclass(frozen=True)
class DeepFMParams:
    """Hyper-parameters TrainConfig does not carry (defaults = deepctr's DeepFM defaults)."""

    model: str = "deepfm"  # any name in deepctr_compat.MODELS taking (linear, dnn) columns
    dnn_hidden_units: tuple[int, ...] = (256, 128)
    dnn_dropout: float = 0.0
    l2_reg_linear: float = 1e-5
    l2_reg_embedding: float = 1e-5
    l2_reg_dnn: float = 0.0
    eval_batch_size: int = 8192


class DeepFMModel:
    """A deepctr network plus the encoders that turn a CtrSplit into its float32 input matrix."""

    def __init__(self, feature_map: dict, net: torch.nn.Module):
        self.feature_map = feature_map
        self.net = net
        self.vocabs = [Vocabulary.from_json(v) for v in feature_map["vocabularies"]]
        self.scaler = NumericScaler.from_json(feature_map["scaler"])
        self.groups: dict[str, int] = {g["name"]: int(g["dim"]) for g in feature_map["vector_groups"]}

    @staticmethod
    def feature_columns(feature_map: dict) -> list:
        emb_dim = feature_map["embedding_dim"]
        cols = [dc.SparseFeat(v["column"], vocabulary_size=len(v["values"]) + 1, embedding_dim=emb_dim)
                for v in feature_map["vocabularies"]]
        cols += [dc.DenseFeat(c, 1) for c in feature_map["scaler"]["columns"]]
        cols += [dc.DenseFeat(g["name"], int(g["dim"])) for g in feature_map["vector_groups"]]
        return cols

    @classmethod
    def build(cls, feature_map: dict, seed: int) -> "DeepFMModel":
        p = feature_map["params"]
        net = dc.build_model(p["model"], cls.feature_columns(feature_map), seed=seed,
                             **_model_kwargs(p))
        model = cls(feature_map, net)
        model._check_layout()
        return model

    def _check_layout(self) -> None:
        # our matrix is built sparse | numeric | groups; deepctr must read columns in that same order
        expected, start = {}, 0
        for name, width in ([(v.column, 1) for v in self.vocabs] + [(c, 1) for c in self.scaler.columns]
                            + list(self.groups.items())):
            expected[name] = (start, start + width)
            start += width
        actual = {k: tuple(v) for k, v in self.net.feature_index.items()}
        if actual != expected:
            raise RuntimeError(f"deepctr feature layout {actual} differs from ours {expected}")

    def input_matrix(self, split: CtrSplit) -> torch.Tensor:
        frame = split.frame
        blocks = []
        for vocab in self.vocabs:
            ids = vocab.encode(frame[vocab.column])
            dc.check_sparse_ids(vocab.column, ids, vocab.size)
            blocks.append(ids.astype(np.float32)[:, None])
        blocks.append(self.scaler.transform(frame))
        for group, dim in self.groups.items():
            if group not in split.vectors:
                raise ValueError(f"vector group {group!r} missing from split (have {sorted(split.vectors)})")
            arr = np.asarray(split.vectors[group], dtype=np.float32)
            if arr.shape != (len(frame), dim):
                raise ValueError(f"vector group {group!r}: shape {arr.shape}, model expects ({len(frame)}, {dim})")
            blocks.append(arr)
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32))

    @torch.no_grad()
    def predict_matrix(self, x: torch.Tensor) -> np.ndarray:
        self.net.eval()
        bs = int(self.feature_map["params"]["eval_batch_size"])
        out = [self.net(x[i:i + bs]).reshape(-1) for i in range(0, len(x), bs)]
        return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)

    def predict(self, split: CtrSplit) -> np.ndarray:
        return self.predict_matrix(self.input_matrix(split))

    def save(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(model_dir / WEIGHTS) as tmp:
            torch.save(self.net.state_dict(), tmp)
        write_json(model_dir / FEATURE_MAP, self.feature_map)

    @classmethod
    def load(cls, model_dir: Path) -> "DeepFMModel":
        model_dir = Path(model_dir)
        feature_map = json.loads((model_dir / FEATURE_MAP).read_text())
        model = cls.build(feature_map, seed=0)
        state = torch.load(model_dir / WEIGHTS, weights_only=True, map_location="cpu")
        model.net.load_state_dict(state)
        model.net.eval()
        return model


def _model_kwargs(p: dict) -> dict:
    # DeepFM's constructor arguments; another backbone would map its own here
    return {"l2_reg_linear": p["l2_reg_linear"], "l2_reg_embedding": p["l2_reg_embedding"],
            "dnn_hidden_units": tuple(p["dnn_hidden_units"]), "dnn_dropout": p["dnn_dropout"],
            "l2_reg_dnn": p["l2_reg_dnn"]}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_feature_map(data: CtrData, groups: Sequence[str], cfg: TrainConfig, params: DeepFMParams) -> dict:
    train = data.train
    return {
        "backbone": params.model,
        "vocabularies": [Vocabulary.fit(train.frame[c], c).to_json() for c in data.categorical],
        "scaler": NumericScaler.fit(train.frame, list(data.numeric)).to_json(),
        # a list, not a dict: the order is the input-matrix column order
        "vector_groups": [{"name": g, "dim": int(np.asarray(train.vectors[g]).shape[1])} for g in groups],
        "embedding_dim": int(cfg.embedding_dim),
        "params": {**asdict(params), "dnn_hidden_units": list(params.dnn_hidden_units)},
        "label": data.label,
        "user_col": data.user_col,
    }


def train_deepfm(data: CtrData, groups: Sequence[str], cfg: TrainConfig, seed: int,
                 params: DeepFMParams = DeepFMParams()) -> FitResult:
    """Train on data.train, pick the epoch with the best valid AUC (patience cfg.patience), return that model."""
    validate_ctr_data(data, groups)
    started = time.perf_counter()
    dc.set_threads(cfg.threads)
    seed_everything(seed)
    model = DeepFMModel.build(make_feature_map(data, groups, cfg, params), seed=seed)
    x_train, x_valid = model.input_matrix(data.train), model.input_matrix(data.valid)
    y_train = torch.from_numpy(dc.as_label_array(data.train.frame[data.label]))
    y_valid = dc.as_label_array(data.valid.frame[data.label])
    optim = torch.optim.Adam(model.net.parameters(), lr=cfg.deepfm_lr)
    shuffler = torch.Generator().manual_seed(seed)
    seed_everything(seed)  # dropout draws from the global generator: same start for every run of this seed

    best_auc, best_epoch, best_state, history = -np.inf, 0, None, []
    epochs_run = 0
    for epoch in range(1, cfg.deepfm_epochs + 1):
        model.net.train()
        order = torch.randperm(len(x_train), generator=shuffler)
        loss_sum = 0.0
        for start in range(0, len(order), cfg.deepfm_batch_size):
            idx = order[start:start + cfg.deepfm_batch_size]
            pred = model.net(x_train[idx]).reshape(-1)
            # summed BCE + deepctr's own L2 terms: the objective deepctr's fit() optimises
            loss = F.binary_cross_entropy(pred, y_train[idx], reduction="sum")
            total = loss + model.net.get_regularization_loss() + model.net.aux_loss
            optim.zero_grad()
            total.backward()
            optim.step()
            loss_sum += loss.detach().item()
        epochs_run = epoch
        p_valid = model.predict_matrix(x_valid)
        row = {"epoch": epoch, "train_logloss": loss_sum / len(x_train),
               "valid_auc": auc(y_valid, p_valid), "valid_logloss": logloss(y_valid, p_valid)}
        history.append(row)
        log.info("%s seed=%d epoch %d: train_logloss=%.4f valid_auc=%.4f", params.model, seed, epoch,
                 row["train_logloss"], row["valid_auc"])
        if row["valid_auc"] > best_auc:
            best_auc, best_epoch = row["valid_auc"], epoch
            best_state = copy.deepcopy(model.net.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.net.load_state_dict(best_state)
    model.net.eval()
    return FitResult(model=model, best_iteration=best_epoch, n_iterations=epochs_run,
                     train_seconds=time.perf_counter() - started, history=history)


def load_deepfm(model_dir: Path) -> DeepFMModel:
    return DeepFMModel.load(model_dir)
