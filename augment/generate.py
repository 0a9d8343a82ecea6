"""Generation stage: run a shard of prompts through vLLM and commit the outputs before the next shard starts.

Outputs are cached per *generation key* = digest(prompt hash, output settings): the model (with its dtype), the
engine settings that change what it writes, sampling, validation and the JSON schema (`output_settings`, which
is also what the published *_text table's recipe records). A shard only sends
prompts whose key has no output yet, so a killed run re-run with the same command regenerates at most the shard
that was in flight, and a daily run pays only for prompts that changed.

    python -m augment generate --config configs/ml100k.yaml --kind item --shard 0   # one shard
    python -m augment generate --config configs/ml100k.yaml --kind user               # all shards in turn
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from augment.output_validation import ACCEPTED, check_output
from configs import GenerationConfig
from feature_store.files import atomic_path, json_digest

log = logging.getLogger(__name__)
# item/user: KAR free text; item_tags/user_interest: JSON-schema constrained (augment/structured.py).
Kind = Literal["item", "user", "item_tags", "user_interest"]
KEY_COLUMN = {"item": "item_id", "user": "user_id", "item_tags": "item_id", "user_interest": "user_id"}
_CACHE_SCHEMA = pa.schema([
    ("gen_key", pa.string()), ("prompt_hash", pa.string()), ("model", pa.string()), ("text", pa.string()),
    ("prompt_tokens", pa.int32()), ("output_tokens", pa.int32()), ("finish_reason", pa.string()),
    ("created_timestamp", pa.timestamp("us", tz="UTC")),
    ("raw_text", pa.string()), ("flag", pa.string()), ("attempts", pa.int32()), ("detail", pa.string()),
])


@dataclass
class ShardStats:
    kind: str
    shard: int
    num_shards: int
    prompts: int
    skipped: int  # already had an output in the cache: no LLM call
    generated: int
    prompt_tokens: int  # summed over every attempt
    output_tokens: int
    seconds: float  # generation wall time, engine start-up excluded
    engine_start_seconds: float = 0.0  # 0 when the engine was already up in this process
    llm_calls: int = 0  # chat() batches sent to the engine
    retried: int = 0  # prompts that needed more than one attempt
    retry_seconds: float = 0.0  # part of `seconds` spent on attempts 2.. (LLM work, not bookkeeping)
    flags: dict = field(default_factory=dict)  # final verdicts
    first_rejections: dict = field(default_factory=dict)  # why first attempts were sent back (what retries fixed)
    engine: dict = field(default_factory=dict)  # vLLM counters spent by this shard (prefix-cache hit rate etc.)
    engine_cores: str = ""  # CPU cores the engine was pinned to ("" on GPU or when nothing was generated)
    engine_window: tuple[float, float] = (0.0, 0.0)  # epoch seconds from holding the cores to last output (0: none)

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0


def max_tokens_for(cfg: GenerationConfig, kind: Kind) -> int:
    s, st = cfg.sampling, cfg.structured
    return {"item": s.max_tokens_item, "user": s.max_tokens_user, "item_tags": st.max_tokens_item,
            "user_interest": st.max_tokens_user}[kind]


def sampling_settings(cfg: GenerationConfig, kind: Kind, json_schema: dict | None = None) -> dict:
    """The sampling arguments of the first attempt (and the schema that constrains it)."""
    s = cfg.sampling
    out = {"temperature": s.temperature, "top_p": s.top_p, "repetition_penalty": s.repetition_penalty,
           "max_tokens": max_tokens_for(cfg, kind), "seed": s.seed}
    if json_schema is not None:
        out["json_schema"] = json_digest(json_schema)
    return out


# Engine settings that change the text a model writes. The others (max_num_seqs, data_parallel_size, memory and
# CPU-core settings, prefix caching, chunked prefill) change only speed, so a change to them reuses every cached
# output. Strictly true in float32 only: in bfloat16 on CPU the text also depends on what else shares the batch
# (GenerationConfig.deterministic), which no cache key can name.
OUTPUT_ENGINE_SETTINGS = ("dtype", "max_model_len", "enforce_eager", "tensor_parallel_size", "seed")


def output_settings(cfg: GenerationConfig, kind: Kind, model: str, json_schema: dict | None = None) -> dict:
    """Everything besides the prompt that decides a generated output: the generation cache key and the text
    table's recipe are both made from this one dict, so neither can claim a setting the other ignores."""
    engine = cfg.engine.model_dump(mode="json")
    return {"model": model, "engine": {k: engine[k] for k in OUTPUT_ENGINE_SETTINGS},
            "sampling": sampling_settings(cfg, kind, json_schema),
            "validation": cfg.validation.model_dump(mode="json")}


def generation_key(prompt_hash: str, settings: dict) -> str:
    return json_digest([prompt_hash, settings], 32)


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
    # Two runs of one shard at once may both commit a key: the newer row wins (same settings, same meaning).
    frame = table.to_pandas().sort_values("created_timestamp", kind="stable")
    return frame.drop_duplicates("gen_key", keep="last")


def cache_rows(cache_dir: Path) -> int:
    """Rows in all committed cache files, duplicates included (the resume test counts them)."""
    files = sorted(cache_dir.glob("part-*.parquet")) if cache_dir.is_dir() else []
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _commit_cache_part(cache_dir: Path, frame: pd.DataFrame) -> Path:
    final = cache_dir / f"part-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
    with atomic_path(final, suffix=".parquet") as tmp:
        pq.write_table(pa.Table.from_pandas(frame, schema=_CACHE_SCHEMA, preserve_index=False), tmp)
    return final


def _attempt_sampling(cfg: GenerationConfig, attempt: int) -> tuple[float, int]:
    """(temperature, seed) of attempt 1, 2, ...: greedy decoding repeats itself, so retries sample."""
    s = cfg.sampling
    if attempt == 1:
        return s.temperature, s.seed
    return max(s.temperature, cfg.validation.retry_temperature), s.seed + 1000 * (attempt - 1)


def run_batch(batch: pd.DataFrame, kind: Kind, cfg: GenerationConfig, json_schema: dict | None,
              stats: ShardStats) -> pd.DataFrame:
    """Generate, validate and retry one batch; returns one final row per prompt (accepted or flagged)."""
    from augment import llm_engine

    sampling = sampling_settings(cfg, kind, json_schema)
    conversations = [json.loads(m) for m in batch["messages"]]
    n = len(batch)
    raw, final, flags, details = [""] * n, [""] * n, [""] * n, [""] * n
    p_tok, o_tok, attempts, finish = [0] * n, [0] * n, [0] * n, [""] * n
    # A prompt longer than the context would fail the whole vLLM batch: flag it and never send it.
    limit = cfg.engine.max_model_len - sampling["max_tokens"]
    pending = []
    for i, t in enumerate(llm_engine.chat_prompt_tokens(cfg.engine, conversations)):
        p_tok[i] = t
        if t > limit:
            flags[i], details[i] = "prompt_too_long", f"{t} prompt tokens > {limit}"
        else:
            pending.append(i)
    for attempt in range(1, cfg.validation.max_attempts + 1):
        if not pending:
            break
        temperature, seed = _attempt_sampling(cfg, attempt)
        t0 = time.perf_counter()
        results = llm_engine.chat(cfg.engine, [conversations[i] for i in pending],
                                  max_tokens=sampling["max_tokens"], temperature=temperature,
                                  top_p=sampling["top_p"], repetition_penalty=sampling["repetition_penalty"],
                                  seed=seed, json_schema=json_schema)
        stats.llm_calls += 1
        if attempt > 1:
            stats.retry_seconds += time.perf_counter() - t0
        if attempt == 2:
            stats.retried += len(pending)
        still = []
        for i, r in zip(pending, results):
            verdict = check_output(r.text, r.finish_reason, cfg.validation, json_schema)
            stats.prompt_tokens += r.prompt_tokens
            stats.output_tokens += r.output_tokens
            raw[i], final[i], flags[i], details[i] = r.text, verdict.text, verdict.flag, verdict.detail
            p_tok[i], o_tok[i], attempts[i], finish[i] = r.prompt_tokens, r.output_tokens, attempt, r.finish_reason
            if not verdict.accepted:
                still.append(i)
                if attempt == 1:
                    stats.first_rejections[verdict.flag] = stats.first_rejections.get(verdict.flag, 0) + 1
        pending = still
    return pd.DataFrame({
        "gen_key": batch["gen_key"].to_numpy(), "prompt_hash": batch["prompt_hash"].to_numpy(),
        "text": final, "prompt_tokens": p_tok, "output_tokens": o_tok, "finish_reason": finish,
        "created_timestamp": pd.Timestamp.now(tz="UTC"), "raw_text": raw, "flag": flags, "attempts": attempts,
        "detail": details,
    })


def pending(prompts: pd.DataFrame, kind: Kind, shard: int | None, cfg: GenerationConfig, cache_dir: Path,
            model: str, json_schema: dict | None = None,
            num_shards: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the shard's prompts with their gen_key, those without a cached output, one per key); shard None: all.
    `num_shards` (default generation.shards) is how many shards this run splits the prompts into."""
    num_shards = num_shards or cfg.shards
    if shard is not None and not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for {num_shards} shards")
    settings = output_settings(cfg, kind, model, json_schema)
    mine = (prompts if shard is None else prompts[shard_of(prompts[KEY_COLUMN[kind]], num_shards) == shard]).copy()
    mine["gen_key"] = [generation_key(h, settings) for h in mine["prompt_hash"]]
    done = read_cache(cache_dir, set(mine["gen_key"]))
    return mine, mine[~mine["gen_key"].isin(done["gen_key"])].drop_duplicates("gen_key")


def generate_shard(prompts: pd.DataFrame, kind: Kind, shard: int, cfg: GenerationConfig, cache_dir: Path,
                   model: str, batch_size: int | None = None, json_schema: dict | None = None,
                   num_shards: int | None = None) -> ShardStats:
    """Generate the missing outputs of one shard; commit them to the cache in one file per batch.

    A prompt whose generation key (prompt hash + model + sampling [+ schema]) already has a final row in the cache
    is skipped; so a re-run after a crash redoes at most the batch in flight, and an unchanged run calls no LLM."""
    from augment import llm_engine

    batch_size = batch_size or cfg.batch_size
    num_shards = num_shards or cfg.shards
    mine, todo = pending(prompts, kind, shard, cfg, cache_dir, model, json_schema, num_shards)
    # Sorting by prompt length keeps batches uniform (little padding work, similar finish times); the shared
    # instruction comes first in every template, so every prompt also shares a prefix for vLLM's prefix cache.
    todo = todo.assign(_len=todo["messages"].str.len()).sort_values("_len", kind="stable")
    stats = ShardStats(kind, shard, num_shards, len(mine), len(mine) - len(todo), 0, 0, 0, 0.0)
    log.info("%s shard %d/%d: %d prompts, %d already generated", kind, shard, num_shards, len(mine), stats.skipped)
    if len(todo):  # engine start-up (12-46 s on CPU, once per process) is reported apart from generation
        since = time.time()
        t0 = time.perf_counter()
        llm_engine.get_engine(cfg.engine)
        stats.engine_start_seconds = time.perf_counter() - t0
        stats.engine_cores = llm_engine.engine_cores() or ""
        since = max(since, llm_engine.cores_held_since() or since)  # the window holds the cores, not the wait
    started = time.perf_counter()
    before = llm_engine.engine_counters(cfg.engine)
    with tqdm(total=len(todo), desc=f"generate {kind} shard {shard}", unit="prompt") as bar:
        for lo in range(0, len(todo), batch_size):
            part = run_batch(todo.iloc[lo:lo + batch_size], kind, cfg, json_schema, stats)
            part["model"] = model
            _commit_cache_part(cache_dir, part)
            stats.generated += len(part)
            for flag, count in part["flag"].value_counts().items():
                stats.flags[flag] = stats.flags.get(flag, 0) + int(count)
            bar.update(len(part))
    stats.seconds = time.perf_counter() - started
    if len(todo):
        stats.engine = llm_engine.counter_delta(before, llm_engine.engine_counters(cfg.engine))
        stats.engine_window = (round(since, 3), round(time.time(), 3))
    log.info("%s shard %d: generated %d, skipped %d, %d LLM calls (%.0f output tok/s), flags %s", kind, shard,
             stats.generated, stats.skipped, stats.llm_calls, stats.output_tokens_per_s, stats.flags)
    return stats


def collect_texts(prompts: pd.DataFrame, kind: Kind, cfg: GenerationConfig, cache_dir: Path, model: str,
                  event_timestamp: pd.Series, json_schema: dict | None = None) -> pd.DataFrame:
    """Join every prompt with its final output; a missing output means a shard has not run (an error).

    Rejected outputs come back with their flag and text "" (never as knowledge); created_timestamp is the row's
    event_timestamp."""
    settings = output_settings(cfg, kind, model, json_schema)
    keys = [generation_key(h, settings) for h in prompts["prompt_hash"]]
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
        "flag": hit["flag"].to_numpy(),
        "attempts": hit["attempts"].to_numpy().astype("int32"),
        "event_timestamp": event_timestamp.to_numpy(),
        # Not the generation clock (it stays in the cache): the same outputs must give the same bytes on every
        # machine, as for imported text. Nothing joins on it (the point-in-time join uses event_timestamp).
        "created_timestamp": event_timestamp.to_numpy(),
    })


def flag_counts(texts: pd.DataFrame) -> dict:
    """The validation report of a text table: rows per flag, retries, and what was published as knowledge."""
    flags = {k: int(v) for k, v in texts["flag"].value_counts().items()}
    return {"rows": len(texts), "flags": flags, "accepted": int(texts["flag"].isin(ACCEPTED).sum()),
            "rejected": int((~texts["flag"].isin(ACCEPTED)).sum()),
            "retried": int((texts["attempts"] > 1).sum()), "max_attempts": int(texts["attempts"].max() or 0)}


def stats_dict(stats: ShardStats) -> dict:
    # The stage timer overwrites "seconds" with the stage's wall time (start-up included): keep ours by name too.
    return asdict(stats) | {"generation_seconds": stats.seconds, "output_tokens_per_s": stats.output_tokens_per_s}
