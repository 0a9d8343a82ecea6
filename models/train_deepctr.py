"""deepctr-torch backbones (DeepFM, DIN, DCN-Mix, AutoInt) on a CtrData variant, optionally behind KAR's adaptor.

Features: categorical -> SparseFeat (ids 1..n from train, 0 unknown); the user's item history -> VarLenSparseFeat
(DIN: attention over it, sharing the item table; other backbones listed in cfg.sequence_backbones: mean-pooled
with their own table); numeric -> DenseFeat(1) standardised on train; each vector group is L2-normalised and reduced to
cfg.vector_reduce.dim by a projection fitted on training items (models/vector_reduce.py), then standardised; each
plain group -> DenseFeat(group, k); each adaptor group -> the adaptor's DenseFeat("kar_<group>", out_dim).
Our own epoch loop (deepctr's fit prints and scores sklearn metrics per batch), early stopping on valid AUC, best
weights kept. Saved as `model.pt` (state_dict of net [+ adaptor]) + `vector_reduce.npz` + `feature_map.json`; `DeepCtrModel.load(dir)`
rebuilds it with `torch.load(..., weights_only=True)` and predicts identically.

    from models.train_deepctr import train_deepctr, DeepCtrModel
    fit = train_deepctr(data, Variant(adaptor_groups=("item_knowledge_emb", "user_profile_emb")), cfg, 0, "din")

Hyper-parameters: cfg.deepctr (configs/train_config.py DeepCtrParams), saved in the feature map's "params".
"""
from __future__ import annotations

import copy
import json
import logging
import random
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from common.files import atomic_path, atomic_write_json
from configs import TrainConfig
from models import deepctr_compat as dc
from models.backbone_names import reads_history
from models.ctr_inputs import CtrData, CtrSplit, validate_ctr_data
from models.encoders import NumericScaler, Vocabulary
from models.feature_spec import HISTORY, Variant, common_feature_map, model_inputs
from models.fit_result import FitResult
from models.kar_adaptor import AdaptedNet, HybridExpertAdaptor
from models.metrics import auc, logloss
from models.vector_reduce import VectorReducer, common_width, fit_reducers, load_npz, save_npz

log = logging.getLogger(__name__)
FEATURE_MAP = "feature_map.json"
WEIGHTS = "model.pt"
ADAPTOR_PREFIX = "kar_"
REDUCE_FILE = "vector_reduce.npz"


class DeepCtrModel:
    """A deepctr network (maybe behind the adaptor) plus the encoders that build its float32 input matrix."""

    def __init__(self, feature_map: dict, net: torch.nn.Module):
        self.feature_map = feature_map
        self.net = net
        self.vocabs = [Vocabulary.from_json(v) for v in feature_map["vocabularies"]]
        self.scaler = NumericScaler.from_json(feature_map["scaler"])
        self.groups: dict[str, int] = {g["name"]: int(g["dim"]) for g in feature_map["vector_groups"]}
        adaptor = feature_map.get("adaptor") or {}
        self.adaptor_groups: dict[str, int] = {g["name"]: int(g["dim"]) for g in adaptor.get("groups", [])}
        self.history = feature_map.get("history")  # {"item": column, "maxlen": L} or None
        self.history_vocab = (next(v for v in self.vocabs if v.column == self.history["item"])
                              if self.history else None)
        # per-dimension train mean / std of each vector group (models saved before it existed: none)
        self.vector_scaler = {g: (np.asarray(v["mean"], dtype=np.float32), np.asarray(v["std"], dtype=np.float32))
                              for g, v in (feature_map.get("vector_scaler") or {}).items()}
        # L2 + projection fitted on training items (models/vector_reduce.py), before the scaler; set by
        # `build_for` / `load` (models saved before it existed read their vectors as they are)
        self.reducers: dict[str, VectorReducer] = {}

    @property
    def required_groups(self) -> list[str]:
        return [*self.groups, *self.adaptor_groups]

    @staticmethod
    def feature_columns(feature_map: dict) -> list:
        emb_dim = feature_map["embedding_dim"]
        sparse = [dc.SparseFeat(v["column"], vocabulary_size=len(v["values"]) + 1, embedding_dim=emb_dim)
                  for v in feature_map["vocabularies"]]
        cols = list(sparse)
        hist = feature_map.get("history")
        if hist:
            item = next(c for c in sparse if c.name == hist["item"])
            cols.append(dc.history_feature(item, int(hist["maxlen"]), feature_map["params"]["model"]))
        cols += [dc.DenseFeat(c, 1) for c in feature_map["numeric"]]
        cols += [dc.DenseFeat(g["name"], int(g["dim"])) for g in feature_map["vector_groups"]]
        adaptor = feature_map.get("adaptor")
        if adaptor:
            cols += [dc.DenseFeat(ADAPTOR_PREFIX + g["name"], int(adaptor["out_dim"])) for g in adaptor["groups"]]
        return cols

    @classmethod
    def build(cls, feature_map: dict, seed: int) -> "DeepCtrModel":
        p = feature_map["params"]
        hist = feature_map.get("history")
        kwargs = {k: v for k, v in p.items() if k not in ("model", "eval_batch_size")}
        kwargs["dnn_hidden_units"] = tuple(kwargs["dnn_hidden_units"])
        net = dc.build_model(p["model"], cls.feature_columns(feature_map), seed=seed,
                             history_item=hist["item"] if hist else None, **kwargs)
        adaptor = feature_map.get("adaptor")
        if adaptor:
            torch.manual_seed(seed)  # adaptor init is outside deepctr's own seeding
            kar = HybridExpertAdaptor([g["dim"] for g in adaptor["groups"]], n_shared=adaptor["n_shared"],
                                      n_specific=adaptor["n_specific"], hidden=adaptor["hidden"],
                                      out_dim=adaptor["out_dim"])
            net = AdaptedNet(net, kar, prefix_width=_prefix_width(feature_map))
        model = cls(feature_map, net)
        model._check_layout()
        return model

    def _layout(self) -> list[tuple[str, int]]:
        """deepctr's view of the input matrix (the adaptor's output replaces the raw knowledge columns)."""
        cols = [(v.column, 1) for v in self.vocabs]
        if self.history:
            cols += [(dc.HISTORY_PREFIX + self.history["item"], int(self.history["maxlen"])),
                     (dc.HISTORY_LENGTH, 1)]
        cols += [(c, 1) for c in self.scaler.columns] + list(self.groups.items())
        out_dim = (self.feature_map.get("adaptor") or {}).get("out_dim")
        cols += [(ADAPTOR_PREFIX + g, int(out_dim)) for g in self.adaptor_groups]
        return cols

    def input_layout(self) -> list[tuple[str, int]]:
        """(model column, vector group or HISTORY, width) of each block of `encode`'s output, in order."""
        out = [(v.column, 1) for v in self.vocabs]
        if self.history:
            out.append((HISTORY, int(self.history["maxlen"]) + 1))
        out += [(c, 1) for c in self.scaler.columns]
        return out + list(self.groups.items()) + list(self.adaptor_groups.items())

    def encode(self, split: CtrSplit) -> np.ndarray:
        return self.input_matrix(split).numpy()

    def forward_fn(self, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
        """encode()d rows -> click probabilities (no autograd, eval mode)."""
        net = self.net.eval()

        def forward(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).reshape(-1).numpy().astype(np.float64)

        return forward

    def _check_layout(self) -> None:
        # our matrix is built in _layout order; deepctr must read its columns at the same offsets
        expected, start = {}, 0
        for name, width in self._layout():
            expected[name] = (start, start + width)
            start += width
        actual = {k: tuple(v) for k, v in self.net.feature_index.items()}
        if actual != expected:
            raise RuntimeError(f"deepctr feature layout {actual} differs from ours {expected}")

    def _vectors(self, split: CtrSplit, groups: dict[str, int]) -> list[np.ndarray]:
        out = []
        for group, dim in groups.items():
            if group not in split.vectors:
                raise ValueError(f"vector group {group!r} missing from split (have {sorted(split.vectors)})")
            arr = np.asarray(split.vectors[group], dtype=np.float32)
            reducer = self.reducers.get(group)
            width = reducer.dim_in if reducer is not None else dim
            if arr.shape != (len(split.frame), width):
                raise ValueError(f"vector group {group!r}: shape {arr.shape}, model expects "
                                 f"({len(split.frame)}, {width})")
            if reducer is not None:
                arr = reducer.transform(arr).astype(np.float32)
            if group in self.vector_scaler:
                mean, std = self.vector_scaler[group]
                arr = (arr - mean) / std
            out.append(arr)
        return out

    def _history_block(self, split: CtrSplit) -> list[np.ndarray]:
        if not self.history:
            return []
        maxlen = int(self.history["maxlen"])
        if split.history is None or split.history_len is None:
            raise ValueError(f"backbone {self.feature_map['backbone']!r} needs the item history "
                             "(CtrSplit.history / history_len)")
        raw = np.asarray(split.history)
        lens = np.minimum(np.asarray(split.history_len, dtype=np.int64), maxlen)
        if raw.shape[1] < maxlen:
            raw = np.pad(raw, ((0, 0), (0, maxlen - raw.shape[1])))
        # keep the most recent `maxlen` of a longer stored history (valid prefix is oldest -> newest)
        if raw.shape[1] > maxlen:
            full = np.asarray(split.history_len, dtype=np.int64)
            take = np.clip(full - maxlen, 0, None)[:, None] + np.arange(maxlen)[None, :]
            raw = np.take_along_axis(raw, np.minimum(take, raw.shape[1] - 1), axis=1)
        ids = self.history_vocab.encode(raw.reshape(-1)).reshape(raw.shape)
        ids[np.arange(maxlen)[None, :] >= lens[:, None]] = 0  # padding stays 0 even if a raw id 0 exists
        dc.check_sparse_ids(dc.HISTORY_PREFIX + self.history["item"], ids.reshape(-1), self.history_vocab.size)
        return [ids.astype(np.float32), lens.astype(np.float32)[:, None]]

    def input_matrix(self, split: CtrSplit) -> torch.Tensor:
        frame = split.frame
        blocks = []
        for vocab in self.vocabs:
            ids = vocab.encode(frame[vocab.column])
            dc.check_sparse_ids(vocab.column, ids, vocab.size)
            blocks.append(ids.astype(np.float32)[:, None])
        blocks += self._history_block(split)
        blocks.append(self.scaler.transform(frame))
        blocks += self._vectors(split, self.groups)
        blocks += self._vectors(split, self.adaptor_groups)  # raw knowledge; AdaptedNet maps it to out_dim
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
        if self.reducers:
            save_npz(model_dir / REDUCE_FILE, self.reducers)
        atomic_write_json(model_dir / FEATURE_MAP, self.feature_map)

    @classmethod
    def build_for(cls, data: CtrData, variant: Variant, cfg: TrainConfig, backbone: str,
                  seed: int) -> "DeepCtrModel":
        """A fresh network for `variant` on `data`: its vector reducers fitted on data.train, its feature map."""
        inputs = model_inputs(data, variant)
        reducers = fit_reducers(data, [*inputs.groups, *inputs.adaptor_groups], cfg.vector_reduce, seed)
        if cfg.kar_shared_experts > 0 and cfg.vector_reduce.method != "none":
            reducers = common_width(reducers, inputs.adaptor_groups)
        model = cls.build(make_feature_map(data, variant, cfg, backbone, reducers), seed=seed)
        model.reducers = reducers
        return model

    @classmethod
    def load(cls, model_dir: Path) -> "DeepCtrModel":
        model_dir = Path(model_dir)
        feature_map = json.loads((model_dir / FEATURE_MAP).read_text())
        model = cls.build(feature_map, seed=0)
        if feature_map.get("vector_reduce"):
            model.reducers = load_npz(model_dir / REDUCE_FILE, model.required_groups)
        state = torch.load(model_dir / WEIGHTS, weights_only=True, map_location="cpu")
        model.net.load_state_dict(state)
        model.net.eval()
        return model


def _prefix_width(feature_map: dict) -> int:
    width = len(feature_map["vocabularies"]) + len(feature_map["scaler"]["columns"])
    width += sum(int(g["dim"]) for g in feature_map["vector_groups"])
    if feature_map.get("history"):
        width += int(feature_map["history"]["maxlen"]) + 1
    return width


def _width(split: CtrSplit, group: str, reducers: Mapping[str, VectorReducer]) -> int:
    return reducers[group].dim_out if group in reducers else int(np.asarray(split.vectors[group]).shape[1])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_feature_map(data: CtrData, variant: Variant, cfg: TrainConfig, backbone: str,
                     reducers: Mapping[str, VectorReducer] | None = None) -> dict:
    """The feature map of a fresh network; with `reducers`, each vector group is read through its reducer (its
    width is the reduced one, its scaler fitted on reduced training vectors)."""
    train = data.train
    inputs = model_inputs(data, variant)
    reducers = dict(reducers or {})

    def train_vectors(g: str) -> np.ndarray:
        arr = np.asarray(train.vectors[g], dtype=np.float64)
        return reducers[g].transform(arr) if g in reducers else arr
    use_history = reads_history(backbone, cfg.sequence_backbones)
    if use_history and not data.has_history:
        raise ValueError(f"backbone {backbone!r} needs each sample's item history; CtrData has none "
                         "(build it with models.history.recent_items)")
    fmap = common_feature_map(
        data, inputs, backbone, int(cfg.history_len) if use_history else None,
        NumericScaler.fit(train.frame, list(inputs.numeric)).to_json(),
        [Vocabulary.fit(train.frame[c], c).to_json() for c in inputs.categorical])
    if inputs.adaptor_groups:
        fmap["adaptor"] = {"groups": [{"name": g, "dim": _width(train, g, reducers)}
                                      for g in inputs.adaptor_groups],
                           "n_shared": int(cfg.kar_shared_experts), "n_specific": int(cfg.kar_specific_experts),
                           "hidden": int(cfg.kar_hidden), "out_dim": int(cfg.kar_out_dim)}
    if cfg.standardize_vectors:
        # unit-norm text vectors have per-dimension values ~0.05: next to standardised numerics and id embeddings
        # the first dense layer barely sees them, and a few epochs on small data never learn from them
        fmap["vector_scaler"] = {}
        for g in [*inputs.groups, *inputs.adaptor_groups]:
            arr = train_vectors(g)
            fmap["vector_scaler"][g] = {"mean": arr.mean(axis=0).astype(np.float32).tolist(),
                                        "std": np.maximum(arr.std(axis=0), 1e-6).astype(np.float32).tolist()}
    if reducers:
        for spec in fmap["vector_groups"]:
            spec["dim"] = _width(train, spec["name"], reducers)
        fmap["vector_reduce"] = {**cfg.vector_reduce.model_dump(mode="json"), "file": REDUCE_FILE,
                                 "fitted_on": "training items (item-keyed groups), else training rows"}
    fmap["embedding_dim"] = int(cfg.embedding_dim)
    fmap["params"] = {**cfg.deepctr.model_dump(mode="json"), "model": backbone,
                      "att_activation": cfg.din_att_activation}
    return fmap


def train_deepctr(data: CtrData, variant: Variant, cfg: TrainConfig, seed: int,
                  backbone: str = "deepfm") -> FitResult:
    """Train on data.train, pick the epoch with the best valid AUC (patience cfg.patience), return that model."""
    inputs = model_inputs(data, variant)
    validate_ctr_data(data, [*inputs.groups, *inputs.adaptor_groups])
    started = time.perf_counter()
    dc.set_threads(cfg.threads)
    seed_everything(seed)
    model = DeepCtrModel.build_for(data, variant, cfg, backbone, seed)
    x_train, x_valid = model.input_matrix(data.train), model.input_matrix(data.valid)
    y_train = torch.from_numpy(dc.as_label_array(data.train.frame[data.label]))
    y_valid = dc.as_label_array(data.valid.frame[data.label])
    optim = torch.optim.Adam(model.net.parameters(), lr=cfg.deepfm_lr)
    shuffler = torch.Generator().manual_seed(seed)
    user_block = next((k for k, v in enumerate(model.vocabs) if v.column == data.user_col), None)
    drop_ids = float(cfg.unseen_id_dropout) if user_block is not None else 0.0
    seed_everything(seed)  # dropout draws from the global generator: same start for every run of this seed

    best_auc, best_epoch, best_state, history = -np.inf, 0, None, []
    epochs_run = 0
    for epoch in range(1, cfg.deepfm_epochs + 1):
        model.net.train()
        order = torch.randperm(len(x_train), generator=shuffler)
        loss_sum = 0.0
        for start in range(0, len(order), cfg.deepfm_batch_size):
            idx = order[start:start + cfg.deepfm_batch_size]
            xb = x_train[idx]
            if drop_ids:
                xb[torch.rand(len(idx), generator=shuffler) < drop_ids, user_block] = 0.0  # the unseen id
            pred = model.net(xb).reshape(-1)
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
        log.info("%s seed=%d epoch %d: train_logloss=%.4f valid_auc=%.4f", backbone, seed, epoch,
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


def load_deepctr(model_dir: Path) -> DeepCtrModel:
    return DeepCtrModel.load(model_dir)
