"""Behaviour-aligned text encoder: NoteLLM's I2I idea on our MiniLM encoder.

NoteLLM (Zhang et al. 2024) tunes its note encoder so that notes users engage with together embed close together.
Here the text encoder (encode.model, all-MiniLM-L6-v2 by default) is fine-tuned contrastively on item pairs that
co-occur in TRAINING interactions: for every user, each positive is paired with the user's next `window` positives,
and MultipleNegativesRankingLoss pulls each pair together against the other pairs of its batch (in-batch
negatives). CPU, seeded, no hub access, no Trainer (it needs the `datasets` package, which we do not install, and
brings wandb/tensorboard reporting we do not want): a plain loop over the same loss.

Which rows count as training-time information (`training_rows`): positives (label 1, never a sampled negative)
that are prompt history (role "history": strictly before the user's cutoff, the rows prompts and the DIN history
already read, for users of every split) or CTR samples of train users. The CTR samples of valid/test users, the
labels the models are selected and scored on, never shape a pair.

The stage (augment/stages.py `behaviour_encoder`) tunes two encoders on the same pairs with the same settings, one
on the LLM item knowledge and one on the raw item text (the control gets the same treatment, or the comparison
would favour one side), and writes item_knowledge_emb_bt / item_raw_emb_bt. Each encoder is an artefact
<workdir>/encoders/<version>/ whose version is the digest of its recipe (base encoder, text table version,
interaction_splits version, pair-mining and training settings, this module's code); manifest.json in it records
that lineage, the number of pairs, the seconds and the losses. An existing version is reused, never retrained.

    python -m augment behaviour-encoder --config configs/ml100k.yaml --set behaviour_encoder.enabled=true
    python -m augment behaviour-encoder --config configs/ml100k.yaml --force      # enabled or not
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from configs import BehaviourEncoderConfig
from feature_store.files import atomic_write_json, fsync_path
from feature_store.lineage import code_digest
from feature_store.store import version_id

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
TRAIN_SETTINGS = ("epochs", "batch_size", "lr", "max_seq_length", "seed")
PAIR_SETTINGS = ("window", "max_pairs", "seed")


def training_rows(splits: pd.DataFrame) -> pd.DataFrame:
    """The positives of `interaction_splits` known at training time: prompt history (any user) and train samples."""
    keep = (splits["label"] == 1) & ((splits["role"] == "history") | (splits["split"] == "train"))
    if "sampled" in splits:
        keep &= ~splits["sampled"].astype(bool)
    return splits.loc[keep, ["user_id", "item_id", "timestamp"]]


def mine_pairs(splits_frame: pd.DataFrame, window: int, max_pairs: int, seed: int,
               keep_items: Collection[int] | None = None) -> pd.DataFrame:
    """Distinct unordered item pairs (item_a < item_b) that follow each other within `window` positions in a user's
    time-ordered training positives; only pairs of `keep_items` (items with text) when given; at most `max_pairs`
    (a seeded sample). Same input and seed, same pairs in the same order, whatever the input's row order."""
    rows = training_rows(splits_frame).sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    users, items = rows["user_id"].to_numpy(), rows["item_id"].to_numpy(np.int64)
    parts = []
    for lag in range(1, window + 1):
        same = users[:-lag] == users[lag:] if lag < len(users) else np.zeros(0, dtype=bool)
        a, b = items[:-lag][same], items[lag:][same]
        parts.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    pairs = np.unique(np.concatenate(parts) if parts else np.zeros((0, 2), np.int64), axis=0)  # sorted rows
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # an item re-rated: not evidence that two items go together
    if keep_items is not None:
        known = np.asarray(sorted(keep_items), dtype=np.int64)
        pairs = pairs[np.isin(pairs[:, 0], known) & np.isin(pairs[:, 1], known)]
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
    return pd.DataFrame({"item_a": pairs[:, 0], "item_b": pairs[:, 1]}).astype("int64")


def encoder_version(recipe: Mapping[str, Any]) -> str:
    """The artefact version of an encoder recipe; this module's code is part of it."""
    return version_id({"artefact": "behaviour_encoder", "code": code_digest("augment.behaviour_encoder"), **recipe})


def _batches(texts_a: Sequence[str], texts_b: Sequence[str], size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches in which no text occurs twice: a repeated item would be its own in-batch negative. A batch
    of one pair has no negative to learn from and is left out."""
    order, out = list(rng.permutation(len(texts_a))), []
    while order:
        batch, seen, rest = [], set(), []
        for i in order:
            if len(batch) < size and texts_a[i] not in seen and texts_b[i] not in seen:
                batch.append(i)
                seen.update((texts_a[i], texts_b[i]))
            else:
                rest.append(i)
        out.append(batch)
        order = rest
    return [b for b in out if len(b) > 1]


def _train(base_model_dir: Path, texts_a: Sequence[str], texts_b: Sequence[str], cfg: BehaviourEncoderConfig,
           seed: int, out_dir: Path) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import get_linear_schedule_with_warmup

    try:  # sentence-transformers >= 5.2 moved the losses; older 3.x/4.x only have the old path
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    torch.manual_seed(seed)  # dropout
    rng = np.random.default_rng(seed)
    model = SentenceTransformer(str(base_model_dir), device="cpu")
    model.max_seq_length = cfg.max_seq_length
    loss_fn = MultipleNegativesRankingLoss(model)
    prep = getattr(model, "preprocess", None) or model.tokenize  # tokenize: sentence-transformers < 6
    epochs = [_batches(texts_a, texts_b, cfg.batch_size, rng) for _ in range(cfg.epochs)]
    steps = sum(map(len, epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), max(steps, 1))
    losses, start = [], time.perf_counter()
    model.train()
    for batches in epochs:
        for batch in batches:
            # Co-occurrence has no direction: each pair is read a->b or b->a at random, so both ends are anchors.
            flip = rng.random(len(batch)) < 0.5
            a = [texts_b[i] if f else texts_a[i] for i, f in zip(batch, flip)]
            b = [texts_a[i] if f else texts_b[i] for i, f in zip(batch, flip)]
            loss = loss_fn([prep(a), prep(b)], None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(round(float(loss.detach()), 5))
    seconds = time.perf_counter() - start
    model.eval()
    model.save(str(out_dir), create_model_card=False)  # a model card would look the base model up on the hub
    return {"steps": steps, "losses": losses, "seconds": round(seconds, 2),
            "pairs_per_second": round(sum(map(len, (b for e in epochs for b in e))) / max(seconds, 1e-9), 2)}


def finetune(base_model_dir: str | Path, texts_a: Sequence[str], texts_b: Sequence[str], cfg: BehaviourEncoderConfig,
             seed: int, out_dir: str | Path, lineage: Mapping[str, Any] | None = None) -> dict:
    """Fine-tune the sentence-transformers model in `base_model_dir` on (texts_a[i], texts_b[i]) pairs and save it
    whole to `out_dir` (<root>/<version>, see `encoder_version`) with manifest.json; returns the manifest. When
    `out_dir` already holds a manifest the encoder is reused (manifest["reused"] True) and nothing is trained.
    The model is written to a temp dir beside `out_dir` and renamed into place, so `out_dir` is whole or absent."""
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).is_file():
        log.info("behaviour encoder %s: reused", out_dir.name)
        return {**json.loads((out_dir / MANIFEST).read_text()), "reused": True}
    if len(texts_a) != len(texts_b) or len(texts_a) < 2:
        raise ValueError(f"behaviour encoder: need at least 2 pairs of texts, got {len(texts_a)} / {len(texts_b)}")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}.", dir=out_dir.parent))
    try:
        log.info("behaviour encoder %s: %d pairs from %s", out_dir.name, len(texts_a), base_model_dir)
        stats = _train(Path(base_model_dir), texts_a, texts_b, cfg, seed, tmp)
        manifest = {"version": out_dir.name, "base_model_dir": str(base_model_dir), "lineage": dict(lineage or {}),
                    "pairs": len(texts_a), "params": {k: getattr(cfg, k) for k in TRAIN_SETTINGS}, "seed": seed,
                    "code": code_digest("augment.behaviour_encoder"),
                    "loss": "MultipleNegativesRankingLoss (in-batch negatives)", **stats}
        atomic_write_json(tmp / MANIFEST, manifest)
        fsync_path(tmp)
        try:
            os.replace(tmp, out_dir)
        except OSError:  # another process finished the same version first: its copy is the same recipe
            if not (out_dir / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_path(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("behaviour encoder %s: %d steps in %.1f s, loss %.3f -> %.3f", out_dir.name, stats["steps"],
             stats["seconds"], stats["losses"][0] if stats["losses"] else float("nan"),
             stats["losses"][-1] if stats["losses"] else float("nan"))
    return {**manifest, "reused": False}


__all__ = ["training_rows", "mine_pairs", "encoder_version", "finetune"]
