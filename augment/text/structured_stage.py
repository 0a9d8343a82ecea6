"""The structured-prompts stage: ONCE-style user-interest and NoteLLM-style item-tag prompt tables.

    python -m augment structured-prompts --config configs/ml100k.yaml
"""
from __future__ import annotations

import functools
import logging
from typing import Mapping

import pandas as pd

from augment.publishing import (
    pinned,
    publish_table,
    skipped,
    stats_dir,
    store_for,
    versions_of,
)
from common.stage_stats import stage_timer
from configs import RunConfig
from feature_store import definitions as defs

log = logging.getLogger(__name__)


def structured_prompts(cfg: RunConfig, inputs: Mapping[str, str], force: bool = False) -> dict:
    """Render the ONCE-style user interest and NoteLLM-style item tag prompts (cold users per config)."""
    from augment.text.structured import build_structured_prompts

    if not (force or cfg.generation.structured.enabled):
        return skipped()
    v = pinned("structured-prompts", inputs)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "structured-prompts") as rec:
        items = functools.cache(lambda: store.read_pandas("items", v["items"]))

        def user_prompts() -> pd.DataFrame:
            frame = build_structured_prompts("user_interest", cfg.prompts, cfg.generation, items(),
                                             store.read_pandas("users", v["users"]),
                                             store.read_pandas("interaction_splits", v["interaction_splits"]),
                                             store.read_pandas("user_cutoffs", v["user_cutoffs"]))
            rec["cold_users"] = int(frame["cold"].sum())
            return frame

        settings = {"prompts": cfg.prompts.model_dump(mode="json"),
                    "structured": cfg.generation.structured.model_dump(mode="json")}
        refs = {"item_tags_prompts": publish_table(
                    cfg, defs.ITEM_TAGS_PROMPTS,
                    lambda: build_structured_prompts("item_tags", cfg.prompts, cfg.generation, items()),
                    {"items": v["items"], **settings}, __name__),
                "user_interest_prompts": publish_table(cfg, defs.USER_INTEREST_PROMPTS, user_prompts, {**v, **settings},
                                                  __name__)}
        return versions_of(refs, rec)
