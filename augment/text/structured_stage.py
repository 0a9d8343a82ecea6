"""The structured-prompts stage: the prompt table of every structured kind (augment/kinds.py: ONCE-style user
interests, NoteLLM-style item tags).

    python -m augment structured-prompts --config configs/ml100k.yaml
"""
from __future__ import annotations

import functools
import logging
from typing import Mapping

import pandas as pd

from augment.kinds import structured_kinds
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

log = logging.getLogger(__name__)


def structured_prompts(cfg: RunConfig, inputs: Mapping[str, str], force: bool = False) -> dict:
    """Render the ONCE-style user interest and NoteLLM-style item tag prompts (cold users per config)."""
    from augment.text.structured import build_structured_prompts

    if not (force or cfg.generation.structured.enabled):
        return skipped("generation.structured.enabled is false")
    v = pinned("structured-prompts", inputs)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "structured-prompts") as rec:
        items = functools.cache(lambda: store.read_pandas("items", v["items"]))

        def user_prompts(kind: str) -> pd.DataFrame:
            frame = build_structured_prompts(kind, cfg.prompts, cfg.generation, items(),
                                             store.read_pandas("users", v["users"]),
                                             store.read_pandas("interaction_splits", v["interaction_splits"]),
                                             store.read_pandas("user_cutoffs", v["user_cutoffs"]))
            rec["cold_users"] = int(frame["cold"].sum())
            return frame

        def item_prompts(kind: str) -> pd.DataFrame:
            return build_structured_prompts(kind, cfg.prompts, cfg.generation, items())

        settings = {"prompts": cfg.prompts.model_dump(mode="json"),
                    "structured": cfg.generation.structured.model_dump(mode="json")}
        refs = {}
        for k in structured_kinds():  # item prompts read the items only; user prompts every input
            build, recipe = ((item_prompts, {"items": v["items"], **settings}) if k.entity == "item"
                             else (user_prompts, {**v, **settings}))
            refs[k.prompt_table] = publish_table(cfg, k.prompt_spec(), functools.partial(build, k.name), recipe,
                                                 __name__)
        return versions_of(refs, rec)
