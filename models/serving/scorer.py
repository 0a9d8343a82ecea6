"""Score candidate items for one user with a registered CTR model and the feature versions its manifest pins.

No LLM on this path: the LLM-derived vectors are already in the pinned feature tables, read into memory once.
Unknown users and items (cold start) take the tables' default vectors / 'unseen' ids and still score; they are
counted per result and in `Scorer.cold_start`.

    from models.serving import Scorer
    scorer = Scorer.from_registry("var/ml100k", "ctr")        # the promoted champion
    p = scorer.score(42, [1, 2, 3])                            # (3,) click probabilities
    p = scorer.score(10**9, [1, 2], context={"gender": "F", "age": 31, "history": [50, 172]})  # cold-start user

`context` (optional) overrides the user's side for this request: user attribute columns of the pinned users
table (`gender`, `occupation`, ... or raw `age`, bucketed as in training) and `history` (recent item ids, oldest
first; sequence models only). Without context the request takes the fast path: two numpy gathers and a forward.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from common.id_keys import key_of
from feature_store import FeatureStore
from feature_store.locations import open_store
from models.feature_spec import USER_KEY
from models.registry import MODEL_NAME, ScoringModel, champion_info, load_model, model_feature_store, registry_root
from models.serving.compiled import CompiledModel, compile_model, history_rows
from models.serving.features import FeatureSnapshot, user_context_frame


@dataclass(frozen=True)
class ScoreResult:
    probabilities: np.ndarray  # (n,) float64
    user_known: bool           # the user has a row in the users table
    unknown_items: int         # candidates with no row in the items table
    defaults: dict[str, int]   # table -> keys of this request that took the table's default


@dataclass
class ColdStartCounts:
    requests: int = 0
    unknown_users: int = 0
    unknown_items: int = 0
    candidates: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: ScoreResult) -> None:
        with self._lock:
            self.requests += 1
            self.unknown_users += int(not result.user_known)
            self.unknown_items += result.unknown_items
            self.candidates += len(result.probabilities)


def set_threads(threads: int) -> None:
    """One intra-op thread for torch: a 100-row forward gains nothing from more, and a shared box loses a lot."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _as_ids(values, what: str, id_type: str = "int") -> np.ndarray:
    """Requested ids as int64 keys: int ids are their own keys, string ids are hashed (common/id_keys.py)."""
    if id_type == "string":
        if isinstance(values, (str, bytes)) or not all(isinstance(v, str) for v in values):
            bad = values if isinstance(values, (str, bytes)) else next(v for v in values if not isinstance(v, str))
            raise ValueError(f"{what}: this model's ids are strings, got {type(bad).__name__} {bad!r}")
        return np.fromiter((key_of(v, "string") for v in values), dtype=np.int64, count=len(values))
    arr = np.asarray(values, dtype=object if isinstance(values, (list, tuple)) else None)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a flat list of integer ids, got shape {arr.shape}")
    if arr.dtype == object:
        for i, v in enumerate(arr):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{what}.{i}: expected an integer id, got {type(v).__name__} {v!r}")
        arr = arr.astype(np.int64)
    if arr.size and (arr.dtype.kind not in "iu" or arr.dtype == np.bool_):
        raise ValueError(f"{what}: expected integer ids, got {arr.dtype} (first value {arr.flat[0]!r})")
    return arr.astype(np.int64, copy=False)


class Scorer:
    """A loaded model compiled against its pinned feature tables. Thread-safe; immutable after construction."""

    def __init__(self, model: ScoringModel, snapshot: FeatureSnapshot, compiled: CompiledModel, info: dict):
        self.model, self.snapshot, self.compiled = model, snapshot, compiled
        self.info = info
        self.cold_start = ColdStartCounts()
        fmap = model.feature_map
        self._maxlen = int(fmap["history"]["maxlen"]) if fmap.get("history") else 0
        self.id_types = {e: (fmap.get("id_types") or {}).get(e, "int") for e in ("user", "item")}

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, feature_store: str | Path | FeatureStore, threads: int = 1,
                       info: Mapping | None = None, pins: Mapping[str, str] | None = None) -> "Scorer":
        """Load a saved model and the exact table versions its manifest pins (`feature_tables`), or `pins` (a
        refreshed set, models/feature_refresh.py), from `feature_store` (a FeatureStore, a directory or an
        object-store URI)."""
        started = time.perf_counter()
        set_threads(threads)
        model = load_model(model_dir)
        pins = dict(pins) if pins is not None else model.feature_tables
        if not pins:
            raise ValueError(f"{model_dir}/manifest.json: no feature_tables pinned; serving needs the versions")
        store = feature_store if isinstance(feature_store, FeatureStore) else open_store(feature_store)
        snapshot = FeatureSnapshot.load(store, pins, model.feature_map)
        compiled = compile_model(model, snapshot, threads=threads)
        m = model.manifest
        description = {"model_dir": str(Path(model_dir)), **{k: m.get(k) for k in ("run_id", "backbone",
                                                                                      "variant", "seed")},
                       "valid_auc": (m.get("metrics") or {}).get("valid_auc"), **dict(info or {}),
                       "load_seconds": round(time.perf_counter() - started, 3)}
        return cls(model, snapshot, compiled, description)

    @classmethod
    def from_registry(cls, workdir: str | Path, name: str = MODEL_NAME, threads: int = 1,
                      feature_store: str | FeatureStore | None = None) -> "Scorer":
        """The champion of `name` under <workdir>/registry, with features from `feature_store`, else where its
        manifest says they are (models.registry.model_feature_store)."""
        root = registry_root(workdir)
        champ = champion_info(root, name)
        if champ is None:
            raise FileNotFoundError(f"{root / name / 'champion.json'}: no champion promoted for {name!r}")
        info = {"name": name, "model_path": champ["model_path"], "promoted_at": champ.get("promoted_at")}
        model_dir = root / name / champ["model_path"]
        return cls.from_model_dir(model_dir, model_feature_store(model_dir, Path(root).parent, feature_store),
                                  threads=threads, info=info)

    @property
    def model_version(self) -> str:
        """What identifies the model in responses and metrics: its registry path (run/backbone/variant/seed)."""
        return str(self.info.get("model_path") or self.info["model_dir"])

    @property
    def feature_versions(self) -> dict[str, str]:
        return dict(self.snapshot.versions)

    def score(self, user_id: int | str, item_ids: Sequence[int] | Sequence[str] | np.ndarray,
              context: Mapping | None = None) -> np.ndarray:
        """Click probability of each candidate, in the order given (one vectorised pass)."""
        return self.score_detailed(user_id, item_ids, context).probabilities

    def score_detailed(self, user_id: int | str, item_ids: Sequence[int] | Sequence[str] | np.ndarray,
                       context: Mapping | None = None) -> ScoreResult:
        """Ids as the source data spells them (ints, or strings for a string-id dataset)."""
        user_key = key_of(user_id, self.id_types["user"])
        if user_key is None:
            want = "an integer" if self.id_types["user"] == "int" else "a string"
            raise ValueError(f"user_id: expected {want}, got {type(user_id).__name__} {user_id!r}")
        ids = _as_ids(item_ids, "item_ids", self.id_types["item"])
        c = self.compiled
        u_pos, u_unknown = c.user_position(user_key)
        user_row, tastes = (self._user_row(user_key, u_pos, context) if context
                            else (c.user_rows[u_pos], c.taste_of(u_pos)))
        i_pos, i_unknown = c.item_positions(ids)
        probs = c.forward(c.assemble(i_pos, user_row, tastes)) if len(ids) else np.zeros(0)
        defaults = dict(zip(c.item_tables, c.item_missing[i_pos].sum(axis=0).tolist()))
        defaults.update(zip(c.user_tables, c.user_missing[u_pos].astype(int).tolist()))
        result = ScoreResult(probs, user_known=not bool(c.user_missing[u_pos, 0]),
                             unknown_items=int(c.item_missing[i_pos, 0].sum()), defaults=defaults)
        self.cold_start.add(result)
        return result

    def _user_row(self, user_id: int, u_pos: int, context: Mapping) -> tuple[np.ndarray, list[np.ndarray]]:
        """Slow path (pandas, ~ms): re-encode this user's inputs with request-time overrides (a request's
        `history` is also what their taste vectors average); the row and the user's match tastes."""
        if not isinstance(context, Mapping):
            raise ValueError(f"context: expected an object, got {type(context).__name__}")
        overrides = user_context_frame(self.snapshot, context)
        row = self.snapshot.scalars(USER_KEY, np.asarray([user_id], dtype=np.int64))  # unknown user: NaN/defaults
        for col, value in overrides.items():
            row[col] = value
        hist = hist_len = None
        if self._maxlen:
            if "history" in context:
                hist, hist_len = history_rows(_as_ids(context["history"], "context['history']",
                                                      self.id_types["item"]).tolist(),
                                              self._maxlen)
            else:
                hist, hist_len = self.snapshot.latest_history(np.asarray([user_id]), self._maxlen)
        elif "history" in context:
            _as_ids(context["history"], "context['history']", self.id_types["item"])  # validated; this model reads no history
        liked = None
        if self.snapshot.taste:
            liked = (history_rows(_as_ids(context["history"], "context['history']", self.id_types["item"]).tolist(),
                                  int(self.snapshot.taste["len"])) if "history" in context
                     else self.snapshot.liked_history(np.asarray([user_id])))
        c = self.compiled
        tastes = c.user_tastes(*liked) if c.pairs else []
        return c.encode_users(row, hist, hist_len, liked)[0], [t[0] for t in tastes]

    def describe(self) -> dict:
        """Model and feature versions (every HTTP response carries these)."""
        return {"model": {k: v for k, v in self.info.items() if k != "load_seconds"},
                "feature_tables": self.feature_versions}
