"""The one place that imports deepctr_torch, with its measured quirks worked around (see docs/architecture.md).

- `import deepctr_torch` starts a thread that calls PyPI with no timeout: a stub `deepctr_torch.utils` exposing a
  no-op `check_version` is put in `sys.modules` before the import, then removed so the real module stays usable.
- Inputs pass through float32: sparse ids must be < vocabulary_size and < 2**24 (exact in float32); checked here.
- `fit()` prints to stdout even with verbose=0 and computes sklearn metrics per batch: we train with our own loop
  (models/train_deepctr.py) and use `quiet_stdout()` around anything in deepctr that prints.
- `y` must be a numpy array; threads are set with `set_threads` (torch has its own OpenMP pool).

- DIN takes (dnn columns, history feature list) and reads the sequence named "hist_<item>"; it shares the item
  embedding table (that is what attention compares). AutoInt (and xDeepFM/FiBiNET/AFN) count fields wrongly and
  crash when the history shares the item table, so every other backbone gets the history under its own
  `embedding_name` (see `history_feature`).

Other modules use `SparseFeat`, `DenseFeat`, `VarLenSparseFeat`, `build_model` and `feature_index` from here,
never deepctr_torch.
"""
from __future__ import annotations

import contextlib
import io
import sys
import types
from typing import Any, Iterator, Sequence

import numpy as np
import torch

FLOAT32_EXACT_INT = 2 ** 24


def _import_deepctr() -> types.ModuleType:
    if "deepctr_torch" in sys.modules:
        return sys.modules["deepctr_torch"]
    stub = types.ModuleType("deepctr_torch.utils")
    stub.check_version = lambda *args, **kwargs: None  # the real one spawns an un-timed PyPI request
    sys.modules["deepctr_torch.utils"] = stub
    try:
        import deepctr_torch
    finally:
        # drop the stub so `deepctr_torch.utils` resolves to the real module if anybody ever needs it
        if sys.modules.get("deepctr_torch.utils") is stub:
            del sys.modules["deepctr_torch.utils"]
    return deepctr_torch


_deepctr = _import_deepctr()
from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat, build_input_features  # noqa: E402,F401 (re-exported, see above)
from deepctr_torch.models import DIN, AutoInt, DCNMix, DeepFM  # noqa: E402

# backbones reachable by name, and the constructor keywords each one accepts
MODELS: dict[str, type] = {"deepfm": DeepFM, "din": DIN, "dcnmix": DCNMix, "autoint": AutoInt}
_KWARGS: dict[str, set[str]] = {
    "deepfm": {"l2_reg_linear", "l2_reg_embedding", "l2_reg_dnn", "dnn_hidden_units", "dnn_dropout"},
    "din": {"l2_reg_embedding", "l2_reg_dnn", "dnn_hidden_units", "dnn_dropout", "att_activation"},
    "dcnmix": {"l2_reg_linear", "l2_reg_embedding", "l2_reg_dnn", "dnn_hidden_units", "dnn_dropout", "cross_num",
               "low_rank", "num_experts"},
    "autoint": {"l2_reg_embedding", "l2_reg_dnn", "dnn_hidden_units", "dnn_dropout", "att_layer_num",
                "att_head_num"},
}
HISTORY_PREFIX = "hist_"  # DIN finds the sequence of feature f under the name "hist_" + f
HISTORY_LENGTH = "hist_len"


def history_feature(item: SparseFeat, maxlen: int, backbone: str) -> VarLenSparseFeat:
    """The item-history sequence column: shared item table for DIN, its own table (mean-pooled) elsewhere."""
    shared = backbone == "din"
    inner = SparseFeat(HISTORY_PREFIX + item.name, vocabulary_size=item.vocabulary_size,
                       embedding_dim=item.embedding_dim,
                       embedding_name=item.embedding_name if shared else HISTORY_PREFIX + item.name)
    return VarLenSparseFeat(inner, maxlen=maxlen, combiner="mean", length_name=HISTORY_LENGTH)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Swallow deepctr's print() calls (fit, SparseFeat(use_hash=True), gpus...)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))


def feature_index(feature_columns: Sequence[Any]) -> dict[str, tuple[int, int]]:
    """Column slice of each feature in the model's input matrix, in deepctr's own order."""
    return dict(build_input_features(list(feature_columns)))


def build_model(name: str, feature_columns: Sequence[Any], seed: int, history_item: str | None = None,
                **kwargs: Any) -> torch.nn.Module:
    """A deepctr model using the same columns for its linear and deep parts (DIN: deep only, attending over
    the history of `history_item`). Keywords the backbone does not take are dropped."""
    if name not in MODELS:
        raise ValueError(f"unknown deepctr backbone {name!r}; known: {sorted(MODELS)}")
    kwargs = {k: v for k, v in kwargs.items() if k in _KWARGS[name]}
    cols = list(feature_columns)
    with quiet_stdout():
        if name == "din":
            if history_item is None:
                raise ValueError("backbone 'din' needs the item history (CtrSplit.history)")
            return DIN(cols, [history_item], seed=seed, device="cpu", **kwargs)
        return MODELS[name](cols, cols, seed=seed, device="cpu", **kwargs)


def check_sparse_ids(name: str, ids: np.ndarray, vocabulary_size: int) -> None:
    """Ids must index the embedding table and survive the float32 input matrix unchanged."""
    if vocabulary_size > FLOAT32_EXACT_INT:
        raise ValueError(f"feature {name!r}: vocabulary of {vocabulary_size} ids is not exact in float32 "
                         f"(limit {FLOAT32_EXACT_INT}); hash or bucket it")
    if ids.size and (ids.min() < 0 or ids.max() >= vocabulary_size):
        row = int(np.flatnonzero((ids < 0) | (ids >= vocabulary_size))[0])
        raise ValueError(f"feature {name!r}: row {row} id {int(ids[row])} outside 0..{vocabulary_size - 1}")


def as_label_array(y: Any) -> np.ndarray:
    """deepctr wants numpy float labels, never a pandas Series."""
    return np.asarray(y, dtype=np.float32).reshape(-1)
