"""Generation stage: run a shard of prompts through an LLM backend, committing outputs as they finish.

Outputs are cached per *generation key* = digest(prompt hash, output settings): the model (with its dtype), the
engine settings that change what it writes, sampling, validation and the JSON schema (`output_settings`, which
is also what the published *_text table's recipe records). A shard only sends
prompts whose key has no output yet, so a killed run re-run with the same command regenerates at most the shard
that was in flight, and a daily run pays only for prompts that changed.

The backend (augment/llm/backend.py: vLLM in this process, OpenAI-compatible endpoints, Ray Data LLM) is kept
full: requests are submitted ahead up to its capacity and each finished output is validated at once, so the
engine never waits for a batch boundary while the cache still gains one file per `generation.batch_size` rows.

    python -m augment generate --config configs/ml100k.yaml --kind item --shard 0   # one shard
    python -m augment generate --config configs/ml100k.yaml --kind user               # all shards in turn
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from augment.kinds import KINDS, Kind
from augment.llm import backends as chat_backend
from augment.llm.backend import ChatBackend, ChatRequest, ChatResult
from augment.text.output_validation import check_output
from common.files import atomic_path, json_digest
from configs import GenerationConfig

log = logging.getLogger(__name__)
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
    llm_calls: int = 0  # requests sent to the LLM, every attempt counted
    retried: int = 0  # prompts that needed more than one attempt
    retry_output_tokens: int = 0  # part of output_tokens spent on attempts 2.. (LLM work beyond one answer each)
    flags: dict = field(default_factory=dict)  # final verdicts
    first_rejections: dict = field(default_factory=dict)  # why first attempts were sent back (what retries fixed)
    engine: dict = field(default_factory=dict)  # vLLM counters spent by this shard (prefix-cache hit rate etc.)
    engine_cores: str = ""  # CPU cores the engine was pinned to ("" on GPU or when nothing was generated)
    engine_window: tuple[float, float] = (0.0, 0.0)  # epoch seconds from holding the cores to last output (0: none)
    backend: str = ""  # generation.backend that ran it ("" when nothing was generated)
    where: dict = field(default_factory=dict)  # the backend's own account: endpoints and their requests, Ray CPUs

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0


def max_tokens_for(cfg: GenerationConfig, kind: Kind) -> int:
    """The kind's token budget (augment/kinds.py: sampling.* for free text, structured.* for JSON)."""
    return KINDS[kind].max_tokens_of(cfg)


def stop_for(cfg: GenerationConfig, json_schema: dict | None) -> tuple[str, ...]:
    """Stop strings apply to free text; a JSON answer ends with its schema."""
    return () if json_schema is not None else tuple(cfg.sampling.stop)


def sampling_settings(cfg: GenerationConfig, kind: Kind, json_schema: dict | None = None) -> dict:
    """The sampling arguments of the first attempt (and the schema that constrains it)."""
    s = cfg.sampling
    out = {"temperature": s.temperature, "top_p": s.top_p, "repetition_penalty": s.repetition_penalty,
           "max_tokens": max_tokens_for(cfg, kind), "seed": s.seed}
    stop = stop_for(cfg, json_schema)
    if stop:  # keyed once set: the versions made before stop strings existed stay the same
        out["stop"] = list(stop)
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
    # extra_args may change the text (quantization, kv_cache_dtype, ...): keyed once set, absent while empty so
    # that the versions made before it existed stay the same.
    keyed = (*OUTPUT_ENGINE_SETTINGS, *(("extra_args",) if cfg.engine.extra_args else ()))
    return {"model": model, "engine": {k: engine[k] for k in keyed},
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


class _Prompts:
    """One shard's pending prompts on their way through a backend: attempts, verdicts, and rows to commit."""

    def __init__(self, todo: pd.DataFrame, kind: Kind, cfg: GenerationConfig, json_schema: dict | None,
                 stats: ShardStats):
        self.todo, self.kind, self.cfg, self.schema, self.stats = todo, kind, cfg, json_schema, stats
        self.conversations = [json.loads(m) for m in todo["messages"]]
        self.max_tokens = max_tokens_for(cfg, kind)
        n = len(todo)
        self.raw, self.final, self.flags, self.details = [""] * n, [""] * n, [""] * n, [""] * n
        self.p_tok, self.o_tok, self.attempts, self.finish = [0] * n, [0] * n, [0] * n, [""] * n

    def request(self, i: int, attempt: int) -> ChatRequest:
        temperature, seed = _attempt_sampling(self.cfg, attempt)
        s = self.cfg.sampling
        return ChatRequest(key=f"{i}:{attempt}", conversation=self.conversations[i], max_tokens=self.max_tokens,
                           temperature=temperature, top_p=s.top_p, repetition_penalty=s.repetition_penalty,
                           seed=seed, json_schema=self.schema, stop=stop_for(self.cfg, self.schema))

    def too_long(self, i: int, tokens: int, detail: str) -> None:
        self.p_tok[i], self.flags[i], self.details[i] = tokens, "prompt_too_long", detail

    def record(self, r: ChatResult) -> tuple[int, int, bool]:
        """Take one result; returns (prompt index, attempt, accepted)."""
        i, attempt = (int(x) for x in r.key.split(":"))
        self.stats.prompt_tokens += r.prompt_tokens
        self.stats.output_tokens += r.output_tokens
        if attempt > 1:
            self.stats.retry_output_tokens += r.output_tokens
        self.p_tok[i], self.o_tok[i], self.attempts[i], self.finish[i] = (r.prompt_tokens, r.output_tokens, attempt,
                                                                          r.finish_reason)
        if r.error is not None:  # refused by the backend for good: the prompt does not fit the context
            self.raw[i], self.final[i], self.flags[i], self.details[i] = "", "", r.error, r.finish_reason
            return i, attempt, True
        verdict = check_output(r.text, r.finish_reason, self.cfg.validation, self.schema)
        self.raw[i], self.final[i], self.flags[i], self.details[i] = r.text, verdict.text, verdict.flag, verdict.detail
        if not verdict.accepted and attempt == 1:
            self.stats.first_rejections[verdict.flag] = self.stats.first_rejections.get(verdict.flag, 0) + 1
        return i, attempt, verdict.accepted

    def rows(self, idx: list[int]) -> pd.DataFrame:
        pick = lambda values: [values[i] for i in idx]  # noqa: E731
        return pd.DataFrame({
            "gen_key": self.todo["gen_key"].to_numpy()[idx], "prompt_hash": self.todo["prompt_hash"].to_numpy()[idx],
            "text": pick(self.final), "prompt_tokens": pick(self.p_tok), "output_tokens": pick(self.o_tok),
            "finish_reason": pick(self.finish), "created_timestamp": pd.Timestamp.now(tz="UTC"),
            "raw_text": pick(self.raw), "flag": pick(self.flags), "attempts": pick(self.attempts),
            "detail": pick(self.details),
        })


def run_prompts(todo: pd.DataFrame, kind: Kind, cfg: GenerationConfig, json_schema: dict | None,
                stats: ShardStats, backend: ChatBackend, commit: Callable[[pd.DataFrame], None],
                batch_size: int) -> None:
    """Drive `todo` through `backend` with up to backend.capacity() requests in flight; every `batch_size`
    final rows (accepted, or flagged after the last attempt) go to `commit` at once.

    A rejected output is resubmitted ahead of new prompts with the next attempt's temperature and seed, so a
    prompt's row is final soon and a crash loses at most the rows not yet committed (< batch_size) plus those in
    flight. Attempt k's sampling depends only on k, never on the batch, so retries mean the same on every backend."""
    work = _Prompts(todo, kind, cfg, json_schema, stats)
    queue: deque[tuple[int, int]] = deque()
    ready: list[int] = []
    # A prompt longer than the context would fail a whole vLLM batch: flag it and never send it. Backends that
    # cannot count tokens (remote endpoints) report such a prompt on its own result instead.
    limit = cfg.engine.max_model_len - work.max_tokens
    tokens = backend.prompt_tokens(work.conversations)
    for i in range(len(todo)):
        if tokens is not None and tokens[i] > limit:
            work.too_long(i, tokens[i], f"{tokens[i]} prompt tokens > {limit}")
            ready.append(i)
        else:
            queue.append((i, 1))
    inflight = 0
    while queue or inflight:
        room = backend.capacity() - inflight
        if queue and room > 0:
            batch = [queue.popleft() for _ in range(min(room, len(queue)))]
            backend.submit([work.request(i, attempt) for i, attempt in batch])
            inflight += len(batch)
            stats.llm_calls += len(batch)
        for result in backend.poll():
            inflight -= 1
            i, attempt, accepted = work.record(result)
            if accepted or attempt >= cfg.validation.max_attempts:
                ready.append(i)
            else:
                queue.appendleft((i, attempt + 1))
                if attempt == 1:
                    stats.retried += 1
        while len(ready) >= batch_size:
            commit(work.rows(ready[:batch_size]))
            ready = ready[batch_size:]
    if ready:
        commit(work.rows(ready))


def pending(prompts: pd.DataFrame, kind: Kind, shard: int | None, cfg: GenerationConfig, cache_dir: Path,
            model: str, json_schema: dict | None = None,
            num_shards: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the shard's prompts with their gen_key, those without a cached output, one per key); shard None: all.
    `num_shards` (default generation.shards) is how many shards this run splits the prompts into."""
    num_shards = num_shards or cfg.shards
    if shard is not None and not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for {num_shards} shards")
    settings = output_settings(cfg, kind, model, json_schema)
    mine = (prompts if shard is None else prompts[shard_of(prompts[KINDS[kind].key], num_shards) == shard]).copy()
    mine["gen_key"] = [generation_key(h, settings) for h in mine["prompt_hash"]]
    done = read_cache(cache_dir, set(mine["gen_key"]))
    return mine, mine[~mine["gen_key"].isin(done["gen_key"])].drop_duplicates("gen_key")


def _backend_account(backend: ChatBackend) -> tuple[dict, str, float | None]:
    """The backend's describe() (copied: a backend may hand out its live dict) without the two entries the shard
    stats keep apart: the engine cores and when they were held."""
    where = dict(backend.describe())
    return where, where.pop("engine_cores", ""), where.pop("cores_held_since", None)


def generate_shard(prompts: pd.DataFrame, kind: Kind, shard: int, cfg: GenerationConfig, cache_dir: Path,
                   model: str, batch_size: int | None = None, json_schema: dict | None = None,
                   num_shards: int | None = None, backend: ChatBackend | None = None) -> ShardStats:
    """Generate the missing outputs of one shard through `backend` (default: generation.backend); commit them to
    the cache in one file per `batch_size` final rows.

    A prompt whose generation key (prompt hash + model + sampling [+ schema]) already has a final row in the cache
    is skipped; so a re-run after a crash redoes at most the rows in flight, and an unchanged run calls no LLM."""
    batch_size = batch_size or cfg.batch_size
    num_shards = num_shards or cfg.shards
    mine, todo = pending(prompts, kind, shard, cfg, cache_dir, model, json_schema, num_shards)
    # Sorting by prompt length keeps batches uniform (little padding work, similar finish times); the shared
    # instruction comes first in every template, so every prompt also shares a prefix for vLLM's prefix cache.
    todo = todo.assign(_len=todo["messages"].str.len()).sort_values("_len", kind="stable")
    stats = ShardStats(kind, shard, num_shards, len(mine), len(mine) - len(todo), 0, 0, 0, 0.0)
    log.info("%s shard %d/%d: %d prompts, %d already generated", kind, shard, num_shards, len(mine), stats.skipped)
    if not len(todo):
        return stats
    backend = backend or chat_backend.open_backend(cfg)
    stats.backend = backend.name
    # Engine start-up (12-46 s on CPU, once per process) or the fleet's health check is reported apart.
    since = time.time()
    t0 = time.perf_counter()
    backend.start()
    stats.engine_start_seconds = time.perf_counter() - t0
    _, stats.engine_cores, held_since = _backend_account(backend)
    # The window starts when the engine held its cores (a claim may wait for another engine), not at the ask.
    since = max(since, held_since or since)
    started = time.perf_counter()
    before = backend.counters()
    with tqdm(total=len(todo), desc=f"generate {kind} shard {shard} ({backend.name})", unit="prompt") as bar:
        def commit(part: pd.DataFrame) -> None:
            part["model"] = model
            _commit_cache_part(cache_dir, part)
            stats.generated += len(part)
            for flag, count in part["flag"].value_counts().items():
                stats.flags[flag] = stats.flags.get(flag, 0) + int(count)
            bar.update(len(part))

        try:
            run_prompts(todo, kind, cfg, json_schema, stats, backend, commit, batch_size)
        finally:
            backend.close()
    stats.where, cores, _ = _backend_account(backend)
    # A backend whose engines start with the work (Ray's actors) knows their cores only at the end.
    stats.engine_cores = cores or stats.engine_cores
    stats.seconds = time.perf_counter() - started
    stats.engine = counter_delta(before, backend.counters())
    stats.engine_window = (round(since, 3), round(time.time(), 3))
    log.info("%s shard %d: generated %d, skipped %d, %d LLM requests (%.0f output tok/s), flags %s", kind, shard,
             stats.generated, stats.skipped, stats.llm_calls, stats.output_tokens_per_s, stats.flags)
    return stats


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Counters spent between two snapshots, plus the prefix-cache hit rate (token-weighted) when exposed."""
    out: dict[str, float] = {k: after[k] - before.get(k, 0) for k in after}
    if out.get("prefix_cache_queries"):
        out["prefix_cache_hit_rate"] = out["prefix_cache_hits"] / out["prefix_cache_queries"]
    return out


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
        KINDS[kind].key: prompts[KINDS[kind].key].to_numpy(),
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


def stats_dict(stats: ShardStats) -> dict:
    # The stage timer overwrites "seconds" with the stage's wall time (start-up included): keep ours by name too.
    return asdict(stats) | {"generation_seconds": stats.seconds, "output_tokens_per_s": stats.output_tokens_per_s}
