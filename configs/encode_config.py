"""The `encode:` and `behaviour_encoder:` sections of a run config: the text encoder and the behaviour-aligned one.

    from configs.encode_config import EncodeConfig
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from configs.data_config import RAW_ITEM_DEFAULT
from configs.strict import Strict as _Strict


class EncodeConfig(_Strict):
    model: str = "embedded:all-minilm-l6-v2"
    batch_size: int = 64
    normalize: bool = True
    # sentence-transformers, or vLLM's pooling runner (same vectors for MiniLM; any decoder LLM as an encoder).
    backend: Literal["sentence-transformers", "vllm-pooling"] = "sentence-transformers"
    pooling: Literal["auto", "MEAN", "LAST", "CLS"] = "auto"  # vllm-pooling only; "auto" = the model's own
    prompt: Literal["none", "notellm"] = "none"  # notellm: compress the text into one word, pool the last token
    max_model_len: int = Field(512, ge=16)
    # The no-LLM control text (kind item_raw), in this order: any of title/year/genres and data.item_text_columns.
    raw_item_columns: list[str] = Field(default_factory=lambda: list(RAW_ITEM_DEFAULT), min_length=1)


class BehaviourEncoderConfig(_Strict):
    """NoteLLM-style behaviour alignment of the text encoder (augment/encode/behaviour_encoder.py): encode.model tuned
    contrastively on item pairs that co-occur in training interactions, one copy per text it encodes (the LLM item
    knowledge and the raw-text control), written as item_knowledge_emb_bt / item_raw_emb_bt.

    `mode: head` (default) trains only a d x d linear head on the frozen encoder's vectors, which are computed once
    per item, so every mined pair fits in seconds on CPU; `mode: full` fine-tunes the whole transformer (~10-17 s
    per 32-pair step on 2 CPU cores: hundreds of pairs, not tens of thousands). Each mode reads its own `head_*` /
    plain training keys; `max_pairs` caps the pairs of both, its default depending on the mode."""

    enabled: bool = False  # off: the stage and its DAG task do nothing (the CLI's --force runs it anyway)
    mode: Literal["head", "full"] = "head"
    window: int = Field(3, ge=1, description="pair each positive with a user's next `window` positives")
    # ML-100K mines ~70k distinct pairs. Head mode takes them all (HEAD_MAX_PAIRS); full mode reads ~2 (LLM text)
    # to ~7 (raw text) pairs/s on a shared 2-core box, so 512 pairs took ~6 min for both encoders
    # (bench/behaviour_encoder/ml100k.py).
    max_pairs: int | None = Field(None, ge=1, description="distinct pairs kept (a seeded sample when more are "
                                  "mined); unset: 100_000 in head mode, 512 in full mode")
    # head mode; defaults picked on ML-100K held-out co-occurrence pairs (bench/behaviour_encoder/ml100k.py): 20
    # epochs at scale 5 gave AUC 0.51 -> 0.53 (knowledge) / 0.55 -> 0.58 (raw), the best of the settings tried;
    # scale 20 (sentence-transformers' default) pulled every vector together (random-pair cosine ~0.92).
    head_epochs: int = Field(20, ge=1)
    head_scale: float = Field(5.0, gt=0, description="cosine-similarity scale (inverse temperature) of the loss")
    head_batch_size: int = Field(256, ge=2, description="pairs per step; in-batch negatives like big batches")
    head_lr: float = Field(1e-3, gt=0)
    # full mode
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2, description="pairs per step; the other pairs of a batch are its negatives")
    lr: float = Field(2e-5, gt=0)
    max_seq_length: int = Field(128, ge=8, description="tokens per text while training and encoding (both modes)")
    seed: int = 0

    @property
    def pair_cap(self) -> int:
        """`max_pairs`, or the mode's default when unset."""
        if self.max_pairs is not None:
            return self.max_pairs
        return HEAD_MAX_PAIRS if self.mode == "head" else FULL_MAX_PAIRS


HEAD_MAX_PAIRS = 100_000  # every pair ML-100K mines (~70k); a cap for bigger logs (pairs sit in memory as text)


FULL_MAX_PAIRS = 512


SMOLLM2_NOTELLM = {"model": "embedded:smollm2-135m-instruct", "backend": "vllm-pooling", "pooling": "LAST",
                   "prompt": "notellm"}


class EncoderProbeConfig(_Strict):
    """The encoder probe (augment/encode/encoder_probe.py, `python -m augment encoder-probe`): candidate encoders
    ranked by item-neighbour recall@k against training co-occurrence. Each candidate is a set of `encode:` keys over
    the run's own `encode:` section; `{}` is the configured encoder itself."""

    # MiniLM (the default encoder) and the embedded SmolLM2 as a NoteLLM-style encoder: both ship in PyPI packages
    encoders: list[dict] = Field(default_factory=lambda: [{}, dict(SMOLLM2_NOTELLM)])
    k: int = Field(10, ge=1, description="neighbours per item")

    @field_validator("encoders")
    @classmethod
    def _known_keys(cls, value: list[dict]) -> list[dict]:
        for i, overrides in enumerate(value):
            unknown = sorted(set(overrides) - set(EncodeConfig.model_fields))
            if unknown:
                raise ValueError(f"encoder_probe.encoders[{i}]: unknown encode key(s) {unknown}")
        return value
