"""The publish stages: the generation cache -> versioned *_text tables (and the structured feature tables).

    python -m augment publish-texts --config configs/ml100k.yaml --kind item
    python -m augment publish-structured --config configs/ml100k.yaml --kind item_tags
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from augment.kinds import KINDS, Kind, StructuredKind
from augment.llm.generate_stage import json_schema_for
from augment.publishing import (
    STATIC_TIME,
    external_text,
    generation_cache,
    kind_off,
    pinned,
    publish_table,
    skipped,
    stats_dir,
    store_for,
    versions_of,
)
from augment.text.import_stage import external_table
from common.stage_stats import stage_timer
from configs import REPO_ROOT, RunConfig
from feature_store import TableRef

log = logging.getLogger(__name__)


def text_table(cfg: RunConfig, kind: Kind, v: Mapping[str, str], rec: dict) -> tuple[Callable, TableRef]:
    """Publish (or reuse) the *_text table of `kind`; returns a loader of (prompts, texts) and the table."""
    from augment.llm.generate import collect_texts, output_settings
    from augment.llm.model_identity import model_id_for
    from augment.text.output_validation import flag_counts

    store = store_for(cfg)
    prompt_table = KINDS[kind].prompt_table
    model = model_id_for(cfg.generation)
    schema = json_schema_for(cfg, kind)
    prompt_frame = functools.cache(lambda: store.read_pandas(prompt_table, v[prompt_table]))

    def texts() -> pd.DataFrame:
        frame = prompt_frame()
        event_ts = frame["cutoff"] if KINDS[kind].time == "cutoff" else pd.Series(STATIC_TIME, index=frame.index)
        out = collect_texts(frame, kind, cfg.generation, generation_cache(cfg), model, event_ts, schema)
        rec["finish_length"] = int((out["finish_reason"] == "length").sum())
        rec["validation"] = flag_counts(out)
        # Kept for the retrain report: accepted-but-truncated rows, and rows published with text "" (rejected).
        rec["truncated"] = rec["validation"]["flags"].get("truncated", 0)
        rec["empty"] = rec["validation"]["rejected"]
        log.info("%s text: %s", kind, rec["validation"])
        return out

    # The recipe holds exactly what the generation cache key holds (augment/llm/generate.py output_settings).
    recipe = {"prompts": v[prompt_table], "output": output_settings(cfg.generation, kind, model, schema)}
    ref = publish_table(cfg, KINDS[kind].text_spec(), texts, recipe, __name__)
    return prompt_frame, ref


def publish_texts(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str]) -> dict[str, str]:
    """Collect every shard's output into the versioned *_text table; stats record the validation counts.

    With generation.external.<kind> set, the configured file is imported instead (see `import_text`)."""
    if off := kind_off(cfg, kind):
        return skipped(off)
    v = pinned("publish-texts", inputs, kind, cfg)
    with stage_timer(stats_dir(cfg), f"publish-{kind}-text") as rec:
        ext = external_text(cfg, kind)
        if ext is not None:
            path = Path(ext.path).expanduser()
            ref = external_table(cfg, kind, path if path.is_absolute() else REPO_ROOT / path, ext.source, v, rec)
        else:
            _, ref = text_table(cfg, kind, v, rec)
        return versions_of({KINDS[kind].text_table: ref}, rec)


def publish_structured(cfg: RunConfig, kind: StructuredKind, inputs: Mapping[str, str],
                       force: bool = False) -> dict:
    """Collect the structured outputs into *_text (raw JSON + flags) and the categorical/multi-hot feature table."""
    from augment.text.structured import (
        TOPICS,
        item_tag_features,
        user_interest_features,
    )

    if off := kind_off(cfg, kind, force):
        return skipped(off)
    v = pinned("publish-structured", inputs, kind)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), f"publish-{kind}") as rec:
        prompt_frame, text_ref = text_table(cfg, kind, v, rec)
        texts = functools.cache(lambda: store.read_pandas(text_ref.name, text_ref.version))
        spec = KINDS[kind].feature_spec(len(TOPICS))
        if kind == "item_tags":  # each structured kind parses its JSON its own way (augment/text/structured.py)
            def build() -> pd.DataFrame:
                return item_tag_features(texts(), cfg.generation.structured)
        else:
            def build() -> pd.DataFrame:
                t = texts()
                frame = user_interest_features(t, prompt_frame().set_index("user_id")["cold"])
                # The text's created_timestamp (its cutoff: text tables carry no generation clock, augment/llm/generate.py).
                frame["created_timestamp"] = t.set_index("user_id")["created_timestamp"].reindex(
                    frame["user_id"]).to_numpy()
                return frame
        recipe = {KINDS[kind].text_table: text_ref.version, "topics": list(TOPICS),
                  "structured": cfg.generation.structured.model_dump(mode="json")}
        ref = publish_table(cfg, spec, build, recipe, __name__)
        return versions_of({KINDS[kind].text_table: text_ref, KINDS[kind].feature_table: ref}, rec)
