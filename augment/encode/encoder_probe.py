"""Which text encoder suits this catalogue? A cheap probe on the user's own data, before any CTR model is trained.

For every candidate encoder (`encoder_probe.encoders`: overrides of the `encode:` section) and every item text
(the raw catalogue text, the LLM's item text when the run has one), each item's k nearest neighbours by cosine are
compared with the items that follow it in users' training positives (the behaviour encoder's pairs: prompt history
and train samples, never valid or test labels). Recall@k ranks the encoders; behaviour-tuned vector tables in the
inputs (item_*_emb_bt) are scored on the same pairs, and seeded random vectors give the floor. The table goes to
<workdir>/stats/encoder-probe.json and into the report; the encoder stays a config choice (`encode.model`,
`encode.backend`, ...).

    python -m augment encoder-probe --config configs/ml100k.yaml [--input interaction_splits=<v> ...]
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import sparse

from augment.publishing import pinned, stats_dir, store_for
from common.stage_stats import stage_timer
from configs import RunConfig

log = logging.getLogger(__name__)
BEHAVIOUR_TUNED = ("item_raw_emb_bt", "item_knowledge_emb_bt")
OPTIONAL = ("item_knowledge_text", *BEHAVIOUR_TUNED)  # scored when pinned
BLOCK = 2048  # rows of the similarity matrix held at once: 2048 x 100k floats = 0.8 GB at the most


def neighbour_recall(ids: np.ndarray, vectors: np.ndarray, pairs: pd.DataFrame, k: int) -> tuple[float, int]:
    """(mean recall@k, items scored): for each item with at least one co-occurring partner among `ids`, the share
    of its partners (at most k of them) found among its k nearest other items by cosine."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    both = pairs["item_a"].isin(pos.index) & pairs["item_b"].isin(pos.index)
    a = pos[pairs.loc[both, "item_a"]].to_numpy()
    b = pos[pairs.loc[both, "item_b"]].to_numpy()
    n = len(ids)
    adj = sparse.csr_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    adj.data[:] = 1.0  # a pair mined twice is one partner
    degree = np.asarray(adj.sum(axis=1)).ravel()
    scored = np.flatnonzero(degree > 0)
    if not len(scored) or n < 2:
        return float("nan"), 0
    k = min(k, n - 1)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    hits = np.zeros(len(scored))
    for start in range(0, len(scored), BLOCK):
        rows = scored[start:start + BLOCK]
        sim = unit[rows] @ unit.T
        sim[np.arange(len(rows)), rows] = -np.inf  # an item is not its own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        hits[start:start + len(rows)] = np.asarray(adj[rows[:, None], top].sum(axis=1)).ravel()
    return float(np.mean(hits / np.minimum(degree[scored], k))), int(len(scored))


def _texts(cfg: RunConfig, store, v: Mapping[str, str]) -> dict[str, tuple[np.ndarray, list[str]]]:
    from augment.encode.text_encoder import raw_item_texts
    from augment.text.output_validation import ACCEPTED

    items = store.read_pandas("items", v["items"])
    out = {"raw": (items["item_id"].to_numpy(np.int64), raw_item_texts(items, cfg.encode.raw_item_columns))}
    if "item_knowledge_text" in v:
        t = store.read_pandas("item_knowledge_text", v["item_knowledge_text"])
        t = t[t["flag"].isin(ACCEPTED)] if "flag" in t else t
        out["llm"] = (t["item_id"].to_numpy(np.int64), t["text"].tolist())
    return out


def encoder_probe(cfg: RunConfig, inputs: Mapping[str, str]) -> dict[str, Any]:
    """Score every candidate encoder x item text (and the behaviour-tuned tables pinned in `inputs`) by
    neighbour recall@k against training co-occurrence; returns (and records) the table, best first."""
    from augment.encode.behaviour_encoder import mine_pairs
    from augment.encode.cache import EncodeCache
    from augment.encode.text_encoder import encode_texts, encoder_id

    v = {**pinned("encoder-probe", inputs), **{t: inputs[t] for t in OPTIONAL if t in inputs}}
    store = store_for(cfg)
    k = cfg.encoder_probe.k
    with stage_timer(stats_dir(cfg), "encoder-probe") as rec:
        splits = store.read_pandas("interaction_splits", v["interaction_splits"])
        pairs = mine_pairs(splits, cfg.behaviour_encoder.window, max_pairs=10**9, seed=0)
        rows = []
        texts = _texts(cfg, store, v)
        for overrides in cfg.encoder_probe.encoders:
            enc = type(cfg.encode).model_validate({**cfg.encode.model_dump(), **overrides})
            name = encoder_id(enc)
            cache = EncodeCache(cfg.workdir_path / "encode_cache", enc)  # shared with the encode stage
            for text, (ids, strings) in texts.items():
                vectors, _ = cache.vectors(strings, lambda missing, e=enc: encode_texts(missing, e))
                recall, n = neighbour_recall(ids, vectors, pairs, k)
                rows.append({"encoder": name, "text": text, "items": n, f"recall@{k}": recall})
                log.info("encoder probe: %s on %s text: recall@%d %.4f over %d items", name, text, k, recall, n)
        for table in BEHAVIOUR_TUNED:
            if table in v:  # behaviour-tuned vectors: the head trained on these very pairs, so an upper reference
                emb = store.read_pandas(table, v[table])
                recall, n = neighbour_recall(emb["item_id"].to_numpy(np.int64), np.stack(emb["emb"].to_numpy()),
                                             pairs, k)
                rows.append({"encoder": f"{table} (behaviour-tuned on these pairs)", "text": "-", "items": n,
                             f"recall@{k}": recall})
        ids = texts["raw"][0]
        noise = np.random.default_rng(0).normal(size=(len(ids), 64)).astype(np.float32)
        recall, n = neighbour_recall(ids, noise, pairs, k)
        rows.append({"encoder": "random vectors (floor)", "text": "-", "items": n, f"recall@{k}": recall})
        rows.sort(key=lambda r: -np.nan_to_num(r[f"recall@{k}"], nan=-1.0))
        rec.update({"k": k, "pairs": int(len(pairs)), "rows": rows, "inputs": dict(v)})
        return {"k": k, "pairs": int(len(pairs)), "rows": rows}
