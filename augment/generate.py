"""Generation stage: run a shard of prompts through vLLM and commit the outputs before the next shard starts.

Outputs are cached per *generation key* = sha256(prompt hash, model id, sampling settings). A shard only sends
prompts whose key has no output yet, so a killed run re-run with the same command regenerates at most the shard
that was in flight, and a daily run pays only for prompts that changed.

    python -m augment generate --config configs/ml100k.yaml --kind item --shard 0   # one shard
    python -m augment generate --config configs/ml100k.yaml --kind user               # all shards in turn
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from augment.config import GenerationConfig

log = logging.getLogger(__name__)
Kind = Literal["item", "user"]
KEY_COLUMN = {"item": "item_id", "user": "user_id"}
_CACHE_SCHEMA = pa.schema([
    ("gen_key", pa.string()), ("prompt_hash", pa.string()), ("model", pa.string()), ("text", pa.string()),
    ("prompt_tokens", pa.int32()), ("output_tokens", pa.int32()), ("finish_reason", pa.string()),
    ("created_timestamp", pa.timestamp("us", tz="UTC")),
])


@dataclass
class ShardStats:
    kind: str
    shard: int
    num_shards: int
    prompts: int
    skipped: int
    generated: int
    prompt_tokens: int
    output_tokens: int
    seconds: float

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0


def sampling_settings(cfg: GenerationConfig, kind: Kind) -> dict:
    s = cfg.sampling
    return {"temperature": s.temperature, "top_p": s.top_p, "repetition_penalty": s.repetition_penalty,
            "max_tokens": s.max_tokens_item if kind == "item" else s.max_tokens_user, "seed": s.seed}


def generation_key(prompt_hash: str, model: str, sampling: dict) -> str:
    blob = json.dumps([prompt_hash, model, sampling], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def shard_of(keys: pd.Series, num_shards: int) -> np.ndarray:
    """Stable shard assignment from the entity key (not from row order, which changes between runs)."""
    digest = pd.util.hash_pandas_object(keys.astype("int64"), index=False).to_numpy()
    return (digest % np.uint64(num_shards)).astype(np.int64)


def read_cache(cache_dir: Path, keys: set[str] | None = None) -> pd.DataFrame:
    """Accepted outputs so far; files are only ever added whole (temp file + rename), so readers never see halves."""
    files = sorted(str(p) for p in cache_dir.glob("part-*.parquet")) if cache_dir.is_dir() else []
    if not files:
        return _CACHE_SCHEMA.empty_table().to_pandas()
    dataset = ds.dataset(files, schema=_CACHE_SCHEMA, format="parquet")
    filt = ds.field("gen_key").isin(sorted(keys)) if keys is not None else None
    table = dataset.to_table(filter=filt)
    return table.to_pandas().drop_duplicates("gen_key", keep="last")


def _commit_cache_part(cache_dir: Path, frame: pd.DataFrame) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = cache_dir / f".tmp-{final.name}"
    pq.write_table(pa.Table.from_pandas(frame, schema=_CACHE_SCHEMA, preserve_index=False), tmp)
    with open(tmp, "rb") as f:
        import os

        os.fsync(f.fileno())
    tmp.rename(final)
    return final


def generate_shard(prompts: pd.DataFrame, kind: Kind, shard: int, cfg: GenerationConfig, cache_dir: Path,
                   model: str, batch_size: int = 256) -> ShardStats:
    """Generate the missing outputs of one shard; commit them to the cache in one file per batch."""
    from augment import llm_engine

    if not 0 <= shard < cfg.shards:
        raise ValueError(f"shard {shard} out of range for generation.shards={cfg.shards}")
    sampling = sampling_settings(cfg, kind)
    mine = prompts[shard_of(prompts[KEY_COLUMN[kind]], cfg.shards) == shard].copy()
    mine["gen_key"] = [generation_key(h, model, sampling) for h in mine["prompt_hash"]]
    done = read_cache(cache_dir, set(mine["gen_key"]))
    todo = mine[~mine["gen_key"].isin(done["gen_key"])].drop_duplicates("gen_key")
    # Sorting by prompt length keeps batches uniform; shared instructions come first in every template, so
    # neighbours also share a prefix for vLLM's prefix cache.
    todo = todo.assign(_len=todo["messages"].str.len()).sort_values("_len", kind="stable")
    stats = ShardStats(kind, shard, cfg.shards, len(mine), len(mine) - len(todo), 0, 0, 0, 0.0)
    log.info("%s shard %d/%d: %d prompts, %d already generated", kind, shard, cfg.shards, len(mine), stats.skipped)
    started = time.perf_counter()
    with tqdm(total=len(todo), desc=f"generate {kind} shard {shard}", unit="prompt") as bar:
        for lo in range(0, len(todo), batch_size):
            batch = todo.iloc[lo:lo + batch_size]
            results = llm_engine.chat(cfg.engine, [json.loads(m) for m in batch["messages"]],
                                      max_tokens=sampling["max_tokens"], temperature=sampling["temperature"],
                                      top_p=sampling["top_p"], repetition_penalty=sampling["repetition_penalty"],
                                      seed=sampling["seed"])
            now = pd.Timestamp.now(tz="UTC")
            part = pd.DataFrame({
                "gen_key": batch["gen_key"].to_numpy(), "prompt_hash": batch["prompt_hash"].to_numpy(),
                "model": model, "text": [r.text for r in results],
                "prompt_tokens": [r.prompt_tokens for r in results],
                "output_tokens": [r.output_tokens for r in results],
                "finish_reason": [r.finish_reason for r in results], "created_timestamp": now,
            })
            _commit_cache_part(cache_dir, part)
            stats.generated += len(part)
            stats.prompt_tokens += int(part["prompt_tokens"].sum())
            stats.output_tokens += int(part["output_tokens"].sum())
            bar.update(len(part))
    stats.seconds = time.perf_counter() - started
    log.info("%s shard %d: generated %d (%.0f output tok/s)", kind, shard, stats.generated, stats.output_tokens_per_s)
    return stats


def collect_texts(prompts: pd.DataFrame, kind: Kind, cfg: GenerationConfig, cache_dir: Path, model: str,
                  event_timestamp: pd.Series) -> pd.DataFrame:
    """Join every prompt with its accepted output; a missing output means a shard has not run (an error)."""
    sampling = sampling_settings(cfg, kind)
    keys = [generation_key(h, model, sampling) for h in prompts["prompt_hash"]]
    cache = read_cache(cache_dir, set(keys)).set_index("gen_key")
    missing = [k for k in keys if k not in cache.index]
    if missing:
        raise RuntimeError(f"{len(missing)} {kind} prompts have no generated text yet (first gen_key {missing[0]}); "
                           "run every generation shard before publishing")
    hit = cache.loc[keys]
    return pd.DataFrame({
        KEY_COLUMN[kind]: prompts[KEY_COLUMN[kind]].to_numpy(),
        "text": hit["text"].to_numpy(),
        "model": model,
        "template_name": prompts["template_name"].to_numpy(),
        "template_version": prompts["template_version"].to_numpy(),
        "prompt_hash": prompts["prompt_hash"].to_numpy(),
        "prompt_tokens": hit["prompt_tokens"].to_numpy().astype("int32"),
        "output_tokens": hit["output_tokens"].to_numpy().astype("int32"),
        "finish_reason": hit["finish_reason"].to_numpy(),
        "event_timestamp": event_timestamp.to_numpy(),
        "created_timestamp": hit["created_timestamp"].to_numpy(),
    })


def stats_dict(stats: ShardStats) -> dict:
    return asdict(stats) | {"output_tokens_per_s": stats.output_tokens_per_s}
