"""User taste vectors and the taste-item match: the user side of text vectors, without an LLM.

A taste vector is the (optionally recency-weighted) mean of the item vectors of the items a user liked strictly
before the time that matters (a label's timestamp in training, "now" in serving); the match is the cosine between
that taste and the candidate item's own vector. Both come from one item-keyed vector table (item_knowledge_emb,
item_raw_emb, or a behaviour-tuned variant), so the knowledge text and the raw-text control get the same treatment.

Feature-spec entries (configs/train_config.py) ask for them by transform, on key user_id:

    vector  transform history_mean | history_recency   -> a user-side vector group (taste)
    numeric transform history_cosine                    -> one column: cosine(mean taste, the row's item vector)

The dataset builder computes them per label from the label table's liked events (models/dataset_builder.py);
serving computes the same from the user's latest history or a request-supplied one (models/serving/).
Items a table does not hold are skipped (they carry no text); an empty history gives a zero taste and a zero match.

    hist, n = recent_items(users, items, times, q_users, q_times, max_len=50)
    taste = taste_vectors(hist, n, OnlineTable.load(store, "item_knowledge_emb", v), "emb", "history_mean", 10)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse

TASTE = ("history_mean", "history_recency")
MATCH = "history_cosine"
HISTORY_DERIVED = (*TASTE, MATCH)


def is_history_derived(entry) -> bool:
    """The entry is computed from the user's history of item vectors, not read from its own table by key."""
    return entry.transform in HISTORY_DERIVED


def taste_vectors(hist: np.ndarray, lengths: np.ndarray, table, column: str, mode: str,
                  half_life: float) -> np.ndarray:
    """(n, d) float32: per row, the weighted mean of the vectors of hist[row, :lengths[row]] (oldest first).

    history_mean weighs every known item alike; history_recency halves an item's weight every `half_life` newer
    items. `table` is an OnlineTable keyed by item id (unknown items get weight 0)."""
    hist = np.asarray(hist, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    n, width = hist.shape
    dim = table.spec.feature(column).dim
    if n == 0 or width == 0:
        return np.zeros((n, dim), dtype=np.float32)
    items, inverse = np.unique(hist.reshape(-1), return_inverse=True)
    pos, unknown = table.lookup(items)
    slot = np.arange(width)[None, :]
    weight = (slot < lengths[:, None]).astype(np.float64)
    if mode == "history_recency":
        age = lengths[:, None] - 1 - slot  # 0 for the newest item
        weight *= 0.5 ** (np.maximum(age, 0) / float(half_life))
    elif mode != "history_mean":
        raise ValueError(f"taste transform {mode!r}: expected one of {TASTE}")
    weight[unknown[inverse].reshape(n, width)] = 0.0  # padding (0) and items without text carry no taste
    weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1e-12)
    # a sparse (rows x distinct items) weight matrix times the distinct items' vectors: memory O(rows x width),
    # never the (rows x width x dim) block a gather would need (1M labels x 50 x 384 floats = 77 GB)
    w = sparse.csr_matrix((weight.reshape(-1), (np.repeat(np.arange(n), width), inverse.reshape(-1))),
                          shape=(n, len(items)))
    out = w @ table.vectors_at(column, pos, unknown).astype(np.float64)
    return out.astype(np.float32)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def match(taste: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Row-wise cosine of taste and item vectors (0 where either is zero)."""
    return np.einsum("nd,nd->n", unit(taste), unit(items)).astype(np.float64)


def liked_events(frame) -> np.ndarray:
    """Mask of the label-table rows that are behaviour a taste is made of: liked (label 1), not sampled."""
    ok = np.ones(len(frame), dtype=bool)
    if "sampled" in frame:
        ok &= ~np.asarray(frame["sampled"], dtype=bool)
    if "label" in frame:
        ok &= np.asarray(frame["label"]) == 1
    return ok


def check_item_table(entry, join_keys: Sequence[str]) -> None:
    if list(join_keys) != ["item_id"]:
        raise ValueError(f"feature {entry.name!r}: transform {entry.transform!r} averages item vectors, but table "
                         f"{entry.source!r} is keyed by {list(join_keys)} (expected ['item_id'])")


def entry_taste(entry, table, hist: np.ndarray, lengths: np.ndarray, half_life: float) -> np.ndarray:
    """The taste an entry reads: its own transform for a taste vector, the plain mean for a match."""
    mode = "history_mean" if entry.transform == MATCH else entry.transform
    return taste_vectors(hist, lengths, table, entry.column, mode, half_life)


def history_features(entries: Sequence, tables: dict, hist: np.ndarray, lengths: np.ndarray,
                     item_ids: np.ndarray, half_life: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(vectors, numeric columns) of the history-derived `entries` for rows with these liked-item histories and
    candidate items; `tables` maps each entry's source to its item-keyed OnlineTable."""
    vectors, numeric, cache = {}, {}, {}
    for e in entries:
        key = (e.source, e.column, "history_mean" if e.transform == MATCH else e.transform)
        if key not in cache:
            cache[key] = entry_taste(e, tables[e.source], hist, lengths, half_life)
        if e.transform == MATCH:
            numeric[e.name] = match(cache[key], tables[e.source].get_vectors(e.column, np.asarray(item_ids)))
        else:
            vectors[e.name] = cache[key]
    return vectors, numeric
