"""Behaviour-aligned text encoder: NoteLLM's I2I idea on our MiniLM encoder.

NoteLLM (Zhang et al. 2024) tunes its note encoder so that notes users engage with together embed close together.
Here the text encoder (encode.model, all-MiniLM-L6-v2 by default) is tuned contrastively on item pairs that
co-occur in TRAINING interactions: for every user, each positive is paired with the user's next `window` positives,
and MultipleNegativesRankingLoss (cross-entropy over scaled cosine similarities) pulls each pair together
against the other pairs of its batch (in-batch negatives; a batch never holds an item twice, so no item is its own
negative). CPU, seeded, no hub access, no Trainer (it needs the `datasets` package, which we do not install, and
brings wandb/tensorboard reporting we do not want): plain loops over the same loss.

Two modes (behaviour_encoder.mode):
- `head` (default): the transformer stays frozen and only a d x d linear head (initialised to the identity) is
  trained. Its inputs, the base encoder's vectors, are computed once per distinct text (`base_vectors`), so a step
  is a small matrix product and every mined pair (~70k on ML-100K) trains in seconds. The artefact is a real
  sentence-transformers model, the base modules + Dense(d, d, identity activation) + Normalize, which
  SentenceTransformer(<dir>) loads offline; the tables are the head applied to the base vectors (`head_encode`),
  the same vectors without a second transformer pass.
- `full`: the whole transformer is fine-tuned (~10-17 s per 32-pair step on 2 CPU cores: hundreds of pairs).

Which rows count as training-time information (`training_rows`): positives (label 1, never a sampled negative)
that are prompt history (role "history": strictly before the user's cutoff, the rows prompts and the DIN history
already read, for users of every split) or CTR samples of train users. The CTR samples of valid/test users, the
labels the models are selected and scored on, never shape a pair.

The stage (augment/stages.py `behaviour_encoder`) tunes two encoders on the same pairs with the same settings, one
on the LLM item knowledge and one on the raw item text (the control gets the same treatment, or the comparison
would favour one side), and writes item_knowledge_emb_bt / item_raw_emb_bt. Each encoder is an artefact
<workdir>/encoders/<version>/ whose version is the digest of its recipe (base encoder, text table version,
interaction_splits version, pair-mining settings, the mode and its training settings, this module's code);
manifest.json in it records that lineage, the number of pairs, the seconds and the losses (per step in full mode,
per epoch in head mode). An existing version is reused, never retrained.

    python -m augment behaviour-encoder --config configs/ml100k.yaml --set behaviour_encoder.enabled=true
    python -m augment behaviour-encoder --config configs/ml100k.yaml --force      # enabled or not
    python -m augment behaviour-encoder --config configs/ml100k.yaml --force --set behaviour_encoder.mode=full
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Collection, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

from common.files import atomic_write_json, fsync_path
from common.lineage import code_digest
from configs import BehaviourEncoderConfig
from feature_store.store import version_id

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
TRAIN_SETTINGS = {"head": ("mode", "head_epochs", "head_batch_size", "head_lr", "head_scale", "max_seq_length",
                           "seed"),
                  "full": ("mode", "epochs", "batch_size", "lr", "max_seq_length", "seed")}


def train_settings(cfg: BehaviourEncoderConfig) -> dict[str, Any]:
    """The settings the configured mode trains with (part of the encoder's version; the other mode's keys are not)."""
    return {k: getattr(cfg, k) for k in TRAIN_SETTINGS[cfg.mode]}


def pair_settings(cfg: BehaviourEncoderConfig) -> dict[str, Any]:
    """The pair-mining settings, `max_pairs` resolved to the mode's default."""
    return {"window": cfg.window, "max_pairs": cfg.pair_cap, "seed": cfg.seed}


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
    return version_id({"artefact": "behaviour_encoder", "code": code_digest("augment.encode.behaviour_encoder"), **recipe})


def _batches(keys_a: Sequence[Hashable], keys_b: Sequence[Hashable], size: int,
             order: Sequence[int]) -> list[list[int]]:
    """Batches of pair indices, filled in `order`, in which no key (item text or id) occurs twice: a repeated item
    would be its own in-batch negative. Each pair goes to the oldest open batch that has room and neither of its
    keys, else opens a new one: one pass, so 70k pairs batch in well under a second, and a popular item's many
    pairs spread over many batches instead of ending up alone. A batch of one pair has no negative and is left out."""
    open_: list[tuple[list[int], set]] = []
    done: list[list[int]] = []
    for i in order:
        a, b = keys_a[i], keys_b[i]
        for k, (batch, seen) in enumerate(open_):
            if a not in seen and b not in seen:
                break
        else:
            k, batch, seen = len(open_), [], set()
            open_.append((batch, seen))
        batch.append(int(i))
        seen.update((a, b))
        if len(batch) == size:
            done.append(batch)
            del open_[k]
    done.extend(batch for batch, _ in open_)
    return [b for b in done if len(b) > 1]


def _st_modules() -> Any:
    try:  # sentence-transformers >= 5.2 moved the modules; older 3.x/4.x only have the old path
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules
    return modules


def _load_base(base_model_dir: str | Path, max_seq_length: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(base_model_dir), device="cpu")
    model.max_seq_length = max_seq_length
    return model


def base_vectors(base_model_dir: str | Path, texts: Sequence[str], cfg: BehaviourEncoderConfig,
                 normalize: bool = True, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The frozen base encoder's vector of each distinct text, encoded once: the head's inputs. `normalize` is
    encode.normalize, so they are the plain embedding tables' vectors (read at `max_seq_length` tokens)."""
    distinct = list(dict.fromkeys(texts))
    model = _load_base(base_model_dir, cfg.max_seq_length)
    vectors = model.encode(distinct, batch_size=batch_size, normalize_embeddings=normalize, convert_to_numpy=True,
                           show_progress_bar=False)
    return dict(zip(distinct, np.asarray(vectors, dtype=np.float32)))


def fit_head(x: np.ndarray, ia: np.ndarray, ib: np.ndarray, cfg: BehaviourEncoderConfig,
             seed: int) -> tuple[Any, Any, list[float], int, int]:
    """Train the identity-initialised linear head on base vectors `x` (one row per item) for pairs (ia[i], ib[i])
    of row indices; returns (weight, bias) tensors, the mean loss per pair of each epoch, the steps and the pairs
    read. Same inputs and seed, same head."""
    import torch

    threads = torch.get_num_threads()
    # A step is a few (256 x 384) products: thread hand-offs cost more than they save, most on a shared box
    # (ML-100K, 5 epochs: ~2 min with the default threads, ~13 s with one).
    torch.set_num_threads(1)
    try:
        return _fit_head(torch.from_numpy(x), ia, ib, cfg, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_head(x: Any, ia: np.ndarray, ib: np.ndarray, cfg: BehaviourEncoderConfig,
              seed: int) -> tuple[Any, Any, list[float], int, int]:
    import torch

    d = x.shape[1]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # shuffles and directions: the same pairs and seed, the same head
    head = torch.nn.Linear(d, d)
    with torch.no_grad():  # identity: before any step the tuned vectors are the base ones
        head.weight.copy_(torch.eye(d))
        head.bias.zero_()
    # No weight decay: it would pull the head towards zero, not towards the identity it starts from.
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.head_lr, weight_decay=0.0)
    losses, steps, used = [], 0, 0
    for _ in range(cfg.head_epochs):
        order = torch.randperm(len(ia), generator=gen).tolist()
        total, count = 0.0, 0
        for batch in _batches(ia, ib, cfg.head_batch_size, order):
            # Co-occurrence has no direction: each pair is read a->b or b->a at random, so both ends are anchors.
            flip = torch.rand(len(batch), generator=gen) < 0.5
            a, b = torch.from_numpy(ia[batch]), torch.from_numpy(ib[batch])
            anchor, positive = torch.where(flip, b, a), torch.where(flip, a, b)
            ea = torch.nn.functional.normalize(head(x[anchor]), dim=-1)
            eb = torch.nn.functional.normalize(head(x[positive]), dim=-1)
            # Row i: anchor i against every positive of the batch; its own positive is the right class.
            loss = torch.nn.functional.cross_entropy(cfg.head_scale * ea @ eb.T, torch.arange(len(batch)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
            steps += 1
        losses.append(round(total / max(count, 1), 5))  # mean loss per pair of the epoch
        used += count
    return head.weight.detach(), head.bias.detach(), losses, steps, used


def _train_head(base_model_dir: Path, texts_a: Sequence[str], texts_b: Sequence[str], cfg: BehaviourEncoderConfig,
                seed: int, out_dir: Path, normalize: bool, base: Mapping[str, np.ndarray] | None) -> dict:
    """A d x d linear head on the frozen encoder, trained with MultipleNegativesRankingLoss semantics on the base
    vectors, saved as a sentence-transformers model: base modules + Dense (+ Normalize)."""
    start = time.perf_counter()
    missing = [t for t in dict.fromkeys([*texts_a, *texts_b]) if base is None or t not in base]
    vecs = {**(base or {}), **(base_vectors(base_model_dir, missing, cfg, normalize) if missing else {})}
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    keys = list(dict.fromkeys([*texts_a, *texts_b]))
    index = {t: i for i, t in enumerate(keys)}
    x = np.stack([vecs[t] for t in keys]).astype(np.float32)
    weight, bias, losses, steps, used = fit_head(x, np.array([index[t] for t in texts_a]),
                                                 np.array([index[t] for t in texts_b]), cfg, seed)
    seconds = time.perf_counter() - start
    _save_head(base_model_dir, weight, bias, cfg, normalize, out_dir)
    return {"steps": steps, "losses": losses, "loss_per": "epoch", "seconds": round(seconds, 2),
            "encode_seconds": round(encode_seconds, 2), "texts_encoded": len(missing),
            "pairs_per_second": round(used / max(seconds, 1e-9), 2)}


def _save_head(base_model_dir: Path, weight: Any, bias: Any, cfg: BehaviourEncoderConfig, normalize: bool,
               out_dir: Path) -> None:
    """base modules [+ Normalize when encode.normalize and the base does not end with one: the head was trained on
    normalised vectors] + Dense(d, d, identity activation) [+ Normalize when encode.normalize], so that
    SentenceTransformer(out_dir).encode(texts) gives the tuned vectors the tables hold."""
    import torch
    from sentence_transformers import SentenceTransformer

    m = _st_modules()
    base = _load_base(base_model_dir, cfg.max_seq_length)
    layers = list(base)
    if normalize and not isinstance(layers[-1], m.Normalize):
        layers.append(m.Normalize())
    d = weight.shape[0]
    layers.append(m.Dense(d, d, bias=True, activation_function=torch.nn.Identity(), init_weight=weight.clone(),
                          init_bias=bias.clone()))
    if normalize:
        layers.append(m.Normalize())
    model = SentenceTransformer(modules=layers, device="cpu")
    model.max_seq_length = cfg.max_seq_length
    model.save(str(out_dir), create_model_card=False)  # a model card would look the base model up on the hub


def head_encode(model_dir: str | Path, base: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Apply the trained head of the artefact in `model_dir` to base vectors (`base_vectors`): what
    SentenceTransformer(model_dir).encode gives for the same texts, without a second transformer pass."""
    from safetensors.numpy import load_file

    dense = next(p for p in sorted(Path(model_dir).iterdir()) if p.is_dir() and p.name.split("_", 1)[-1] == "Dense")
    files = {p.suffix: p for p in dense.iterdir()}
    if ".safetensors" in files:
        state = load_file(str(files[".safetensors"]))
    else:  # older sentence-transformers save a torch state dict
        import torch

        state = {k: v.numpy() for k, v in torch.load(files[".bin"], map_location="cpu").items()}
    w, b = (state[k] for k in sorted(state, key=lambda k: "bias" in k))  # linear.weight, linear.bias
    out = np.asarray(base, dtype=np.float32) @ w.T.astype(np.float32) + b.astype(np.float32)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def _train_full(base_model_dir: Path, texts_a: Sequence[str], texts_b: Sequence[str], cfg: BehaviourEncoderConfig,
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
    loss_fn = MultipleNegativesRankingLoss(model)  # scale 20
    prep = getattr(model, "preprocess", None) or model.tokenize  # tokenize: sentence-transformers < 6
    epochs = [_batches(texts_a, texts_b, cfg.batch_size, rng.permutation(len(texts_a))) for _ in range(cfg.epochs)]
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
             seed: int, out_dir: str | Path, lineage: Mapping[str, Any] | None = None, normalize: bool = True,
             base: Mapping[str, np.ndarray] | None = None) -> dict:
    """Tune the sentence-transformers model in `base_model_dir` on (texts_a[i], texts_b[i]) pairs as `cfg.mode`
    says and save it whole to `out_dir` (<root>/<version>, see `encoder_version`) with manifest.json; returns the
    manifest. Head mode reads the base vectors from `base` (text -> vector, `base_vectors`) when given, encoding
    only what is missing; `normalize` is encode.normalize. When `out_dir` already holds a manifest the encoder is
    reused (manifest["reused"] True) and nothing is trained. The model is written to a temp dir beside `out_dir`
    and renamed into place, so `out_dir` is whole or absent."""
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
        if cfg.mode == "head":
            stats = _train_head(Path(base_model_dir), texts_a, texts_b, cfg, seed, tmp, normalize, base)
        else:
            stats = _train_full(Path(base_model_dir), texts_a, texts_b, cfg, seed, tmp)
        manifest = {"version": out_dir.name, "base_model_dir": str(base_model_dir), "lineage": dict(lineage or {}),
                    "pairs": len(texts_a), "mode": cfg.mode, "params": train_settings(cfg), "seed": seed,
                    "normalize": normalize, "code": code_digest("augment.encode.behaviour_encoder"),
                    "loss": "MultipleNegativesRankingLoss (in-batch negatives, scale "
                            f"{cfg.head_scale if cfg.mode == 'head' else 20.0})", **stats}
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
    log.info("behaviour encoder %s (%s): %d steps in %.1f s, loss %.3f -> %.3f", out_dir.name, cfg.mode,
             stats["steps"], stats["seconds"], stats["losses"][0] if stats["losses"] else float("nan"),
             stats["losses"][-1] if stats["losses"] else float("nan"))
    return {**manifest, "reused": False}


__all__ = ["training_rows", "mine_pairs", "encoder_version", "train_settings", "pair_settings", "base_vectors",
           "finetune", "head_encode"]
