"""A registered model compiled against a feature snapshot: one precomputed input row per known item and per user.

Every input column of a CTR model depends on the user OR on the item, never both (ids, attributes, vectors,
history). So at load time we run the model's OWN encoder (`model.encode`: vocabularies, scaler, PCA; the code that built the
training matrices) once over all items and once over all users, and keep

    item_rows  (n_items + 1, width)   the last row = an id no table knows: every item-side default
    user_rows  (n_users + 1, n_user_cols)   likewise for users
    user_cols  the input columns that belong to the user

A request is then two gathers and one broadcast: X = item_rows[pos]; X[:, user_cols] = user_rows[u]; forward.
The one exception is a taste-item match (models/taste.py): a cosine of the user's taste and each candidate's
vector, kept as unit vectors per user and per item and written into its column as `scale * cos + shift` (the
model's own encoding of that column, measured at compile time).
No pandas, no per-row Python. Parity with ScoringModel.predict on the same frame is a test
(tests/serving/test_scorer.py), and the column layout is checked against the encoder's output width at compile
time, so a layout change in models/ fails loudly instead of scoring garbage.

    compiled = compile_model(model, snapshot, threads=1)
    p = compiled.forward(compiled.assemble(item_pos, compiled.user_rows[u]))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from models.ctr_inputs import CtrSplit
from models.feature_spec import HISTORY, ITEM_KEY, USER_KEY, input_sides
from models.registry import ScoringModel
from models.serving.features import FeatureSnapshot
from models.taste import entry_taste, unit


@dataclass
class PairColumn:
    """One taste-item match column: cosine of unit vectors, encoded as the model encodes that column."""

    col: int
    scale: float
    shift: float
    item_unit: np.ndarray      # (len(item_keys) + 1, d)
    user_unit: np.ndarray      # (len(user_keys) + 1, d): each known user's taste as of now (+ the default)


@dataclass
class CompiledModel:
    item_keys: np.ndarray      # sorted int64 item ids with a row in item_rows
    item_rows: np.ndarray      # (len(item_keys) + 1, width)
    item_missing: np.ndarray   # (len(item_keys) + 1, n_item_tables) bool: the item has no row in that table
    item_tables: list[str]     # item-keyed tables the model reads (the attribute table first)
    user_keys: np.ndarray
    user_rows: np.ndarray      # (len(user_keys) + 1, len(user_cols))
    user_missing: np.ndarray   # (len(user_keys) + 1, n_user_tables)
    user_tables: list[str]
    user_cols: np.ndarray      # int64 column indices of the user-side inputs
    forward: Callable[[np.ndarray], np.ndarray]  # (n, width) -> (n,) float64 probabilities
    encode_users: Callable[..., np.ndarray]
    pairs: list[PairColumn] = field(default_factory=list)
    user_tastes: Callable[[np.ndarray, np.ndarray], list[np.ndarray]] | None = None  # liked hist -> unit tastes

    def item_positions(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each id in item_rows (unknown -> the default row) and the unknown mask."""
        return _positions(self.item_keys, item_ids)

    def user_position(self, user_id: int) -> tuple[int, bool]:
        pos, unknown = _positions(self.user_keys, np.asarray([user_id], dtype=np.int64))
        return int(pos[0]), bool(unknown[0])

    def assemble(self, item_pos: np.ndarray, user_row: np.ndarray,
                 tastes: list[np.ndarray] | None = None) -> np.ndarray:
        """Candidate rows for one user; `tastes` (one unit vector per pair column, `taste_of`) when the model has
        match columns."""
        x = self.item_rows[item_pos]  # fancy indexing copies: the shared rows stay untouched
        x[:, self.user_cols] = user_row
        if self.pairs:
            if tastes is None or len(tastes) != len(self.pairs):
                raise ValueError("this model reads a taste-item match: assemble needs the user's tastes")
            for pair, taste in zip(self.pairs, tastes):
                x[:, pair.col] = pair.scale * (pair.item_unit[item_pos] @ taste) + pair.shift
        return x

    def taste_of(self, user_pos: int) -> list[np.ndarray]:
        """The user's taste unit vectors as of now, one per pair column."""
        return [p.user_unit[user_pos] for p in self.pairs]


def _positions(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.searchsorted(keys, ids)
    np.minimum(pos, max(len(keys) - 1, 0), out=pos)
    unknown = keys[pos] != ids if len(keys) else np.ones(len(ids), dtype=bool)
    pos[unknown] = len(keys)  # the default row
    return pos, unknown


def _sentinel(keys: np.ndarray) -> int:
    """An id no table and no vocabulary holds: every lookup of it takes the default path."""
    return int(min(keys.min(initial=0), 0)) - 1


def _placeholder(snapshot: FeatureSnapshot, key: str, n: int) -> pd.DataFrame:
    """The other side's columns, all 'unknown' (they are overwritten or discarded)."""
    attrs = snapshot.scalars(key, np.zeros(0, dtype=np.int64))
    return pd.DataFrame({c: pd.Series([None] * n, dtype=object) if attrs[c].dtype.kind not in "fiu"
                         else np.full(n, np.nan) for c in attrs.columns})


def compile_model(model: ScoringModel, snapshot: FeatureSnapshot, threads: int = 1) -> CompiledModel:
    """Precompute item and user input rows of `model` from `snapshot` (see module docstring). The model says
    which column or group each input block holds (`input_layout`); the feature spec says whose it is."""
    inner = model.inner
    fmap = inner.feature_map
    groups = model.required_groups
    sides = input_sides(fmap)
    user_mask: list[bool] = []
    for name, width in inner.input_layout():
        side = USER_KEY if name == HISTORY else sides.get(name)
        if side not in (USER_KEY, ITEM_KEY):
            raise ValueError(f"{model.model_dir}: input {name!r} belongs to no feature-spec entry of the model "
                             f"(entries cover {sorted(sides)})")
        user_mask += [side == USER_KEY] * width
    user_cols = np.flatnonzero(user_mask).astype(np.int64)
    vocabs = {v["column"]: v["values"] for v in fmap["vocabularies"]}
    hist_spec = fmap.get("history")
    maxlen = int(hist_spec["maxlen"]) if hist_spec else 0
    encode = inner.encode

    def split_for(frame: pd.DataFrame, vectors: dict, history=None, history_len=None) -> CtrSplit:
        n = len(frame)
        if hist_spec and history is None:
            history, history_len = np.zeros((n, maxlen), dtype=np.int64), np.zeros(n, dtype=np.int64)
        return CtrSplit(frame, vectors, history, history_len)

    def check_width(x: np.ndarray, what: str) -> np.ndarray:
        if x.shape[1] != len(user_mask):
            raise RuntimeError(f"{model.model_dir}: the {what} encoder gave {x.shape[1]} columns, the serving "
                               f"layout expects {len(user_mask)} (models/ changed its input layout?)")
        return x

    # items: every id any item table or the id vocabulary knows, plus the default row
    item_keys = snapshot.key_universe(ITEM_KEY, vocabs.get(ITEM_KEY, ()))
    ids = np.append(item_keys, _sentinel(item_keys))
    frame = pd.concat([snapshot.scalars(ITEM_KEY, ids), _placeholder(snapshot, USER_KEY, len(ids))], axis=1)
    vectors = snapshot.vectors(ITEM_KEY, ids, groups)
    item_rows = np.ascontiguousarray(check_width(encode(split_for(frame, vectors)), "item"))
    item_tables = snapshot.tables(ITEM_KEY)
    item_missing = snapshot.missing(ITEM_KEY, ids)

    user_keys = snapshot.key_universe(USER_KEY, vocabs.get(USER_KEY, ()))
    uids = np.append(user_keys, _sentinel(user_keys))
    item_placeholder = _placeholder(snapshot, ITEM_KEY, 1)

    def encode_users(user_frame: pd.DataFrame, history: np.ndarray | None, history_len: np.ndarray | None,
                     liked: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """User-side input columns for rows of user scalar columns (+ histories, for sequence models; + liked
        items, for taste vectors: default their latest)."""
        n = len(user_frame)
        frame = pd.concat([item_placeholder.iloc[[0] * n].reset_index(drop=True),
                           user_frame.reset_index(drop=True)], axis=1)
        vecs = snapshot.vectors(USER_KEY, user_frame[USER_KEY].to_numpy(dtype=np.int64), groups, liked)
        x = check_width(encode(split_for(frame, vecs, history, history_len)), "user")
        return np.ascontiguousarray(x[:, user_cols])

    hist, hist_len = snapshot.latest_history(uids, maxlen) if hist_spec else (None, None)
    user_frame = snapshot.scalars(USER_KEY, uids)
    liked = snapshot.liked_history(uids) if snapshot.taste else None  # once for taste vectors and matches
    user_rows = encode_users(user_frame, hist, hist_len, liked)
    matches = snapshot.match_entries()

    def user_tastes(liked_hist: np.ndarray, liked_len: np.ndarray) -> list[np.ndarray]:
        return [unit(entry_taste(e, snapshot.online[e.source], liked_hist, liked_len, snapshot.taste["half_life"]))
                for e in matches]

    pairs = []
    if matches:
        offsets, start = {}, 0
        for name, width in inner.input_layout():
            offsets[name], start = start, start + width
        tastes = user_tastes(*liked)
        probe = user_frame.iloc[[len(uids) - 1] * 2].reset_index(drop=True)
        for e, taste in zip(matches, tastes):
            probe[e.name] = [0.0, 1.0]
            col = offsets[e.name]
            enc = encode_users(probe, *((hist[-1:].repeat(2, 0), hist_len[-1:].repeat(2)) if hist_spec
                                       else (None, None)))
            where = int(np.flatnonzero(user_cols == col)[0])
            item_vecs = snapshot.online[e.source].get_vectors(e.column, ids)
            pairs.append(PairColumn(col, float(enc[1, where] - enc[0, where]), float(enc[0, where]),
                                    unit(item_vecs), taste))
    return CompiledModel(item_keys, item_rows, item_missing, item_tables, user_keys, user_rows,
                         snapshot.missing(USER_KEY, uids), snapshot.tables(USER_KEY), user_cols,
                         inner.forward_fn(threads), encode_users, pairs, user_tastes if matches else None)


def history_rows(item_ids: list[int], maxlen: int) -> tuple[np.ndarray, np.ndarray]:
    """A request-supplied history (oldest first) as one (1, maxlen) row + length: the last `maxlen` items."""
    tail = list(item_ids)[-maxlen:] if maxlen else []
    hist = np.zeros((1, maxlen), dtype=np.int64)
    hist[0, :len(tail)] = tail
    return hist, np.asarray([len(tail)], dtype=np.int64)
