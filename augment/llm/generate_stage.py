"""The generate stage: one shard (or all) of a pinned prompt table through generation.backend into the
generation cache, which is what a re-run resumes from.

    python -m augment generate --config configs/ml100k.yaml --kind item [--shard 0]
"""
from __future__ import annotations

import logging
from typing import Mapping

from augment.kinds import KINDS, Kind
from augment.publishing import (
    external_text,
    generation_cache,
    kind_off,
    pinned,
    skipped,
    skipped_external,
    stats_dir,
    store_for,
)
from common.stage_stats import stage_timer
from configs import RunConfig

log = logging.getLogger(__name__)


def json_schema_for(cfg: RunConfig, kind: Kind) -> dict | None:
    if not KINDS[kind].structured:
        return None
    from augment.text.structured import schema_for

    return schema_for(kind, cfg.generation)


def generate(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str], shard: int | None = None,
             force: bool = False, num_shards: int | None = None) -> list[dict]:
    """Generate one shard (or every shard in turn) of the pinned prompt table through generation.backend;
    finished rows are committed to the generation cache in batches (that cache is what a re-run resumes from).

    Each shard's stats (prompts, skipped, generated, LLM calls, retries, flags, tokens, tok/s, prefix-cache hit
    rate) go to <workdir>/stats/generate-<kind>-<shard>.json."""
    from augment.llm.generate import generate_shard, stats_dict
    from augment.llm.model_identity import model_id_for

    if off := kind_off(cfg, kind, force):
        return [skipped(off)]
    if external_text(cfg, kind):
        return [skipped_external(cfg, kind)]
    v = pinned("generate", inputs, kind)
    table = KINDS[kind].prompt_table
    prompt_frame = store_for(cfg).read_pandas(table, v[table])
    model = model_id_for(cfg.generation)
    schema = json_schema_for(cfg, kind)
    out = []
    num_shards = num_shards or cfg.generation.shards
    for s in range(num_shards) if shard is None else [shard]:
        with stage_timer(stats_dir(cfg), f"generate-{kind}-{s:03d}") as rec:
            rec["inputs"] = {table: v[table]}
            stats = generate_shard(prompt_frame, kind, s, cfg.generation, generation_cache(cfg), model,
                                   json_schema=schema, num_shards=num_shards)
            rec.update(stats_dict(stats))
        out.append(rec)
    return out


def pending_prompts(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str], shard: int | None = None,
                    num_shards: int | None = None) -> int:
    """How many prompts of a shard (None: of the whole table) have no cached output yet."""
    from augment.llm.generate import pending
    from augment.llm.model_identity import model_id_for

    v = pinned("generate", inputs, kind)
    table = KINDS[kind].prompt_table
    prompt_frame = store_for(cfg).read_pandas(table, v[table])
    _, todo = pending(prompt_frame, kind, shard, cfg.generation, generation_cache(cfg),
                      model_id_for(cfg.generation), json_schema_for(cfg, kind), num_shards)
    return len(todo)


def plan_shards(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str]) -> list[dict]:
    """The generation shards of this run, [{"shard": s, "num_shards": n}, ...]: generation.shards of them, or ONE
    when fewer prompts than one batch (generation.batch_size) are new, as on most days of a daily run, since
    every shard starts its own engine (20-45 s on CPU). Decided once per run, so all shards agree on the split;
    the cache is keyed by prompt, so a resumed run may split differently and loses nothing."""
    n = cfg.generation.shards
    if not kind_off(cfg, kind) and not external_text(cfg, kind) and n > 1:
        if pending_prompts(cfg, kind, inputs) < cfg.generation.batch_size:
            n = 1
    # A re-run of the interval with fewer shards must not leave an earlier plan's extra shards in its stats.
    for stale in stats_dir(cfg).glob(f"generate-{kind}-*.json"):
        if int(stale.stem.rsplit("-", 1)[1]) >= n:
            stale.unlink(missing_ok=True)
    return [{"shard": s, "num_shards": n} for s in range(n)]
