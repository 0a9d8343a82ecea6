"""The prompts stage: KAR item and user prompt tables rendered from the versioned templates.

    python -m augment prompts --config configs/ml100k.yaml
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Mapping

import pandas as pd

from augment.publishing import pinned, publish_table, stats_dir, store_for, versions_of
from common.stage_stats import stage_timer
from configs import RunConfig
from feature_store import definitions as defs

log = logging.getLogger(__name__)


def prompts(cfg: RunConfig, inputs: Mapping[str, str]) -> dict[str, str]:
    """Render KAR item and user prompts from the versioned templates."""
    from augment.text.prompts import (
        build_item_prompts,
        build_profile_prompts,
        build_user_prompts,
        item_text_placeholders,
        load_template,
    )

    v = pinned("prompts", inputs)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "prompts") as rec:
        item_t, user_t = load_template(cfg.prompts.item_template), load_template(cfg.prompts.user_template)
        items = functools.cache(lambda: store.read_pandas("items", v["items"]))

        def user_prompts() -> pd.DataFrame:
            build = build_user_prompts
            if cfg.stream is not None:  # one prompt per (user, cutoff): the history strictly before each cutoff
                build = functools.partial(build_profile_prompts, history_max=cfg.split.history_max)
            return build(store.read_pandas("interaction_splits", v["interaction_splits"]),
                         store.read_pandas("users", v["users"]), items(),
                         store.read_pandas("user_cutoffs", v["user_cutoffs"]), user_t)

        settings = {"max_data_tokens": cfg.prompts.max_data_tokens}
        item_settings = dict(settings)
        # Item text (descriptions) counts against max_data_tokens in the generation model's tokens; the tokenizer
        # is loaded, and named in the recipe, only when the template uses such a column.
        item_columns = [f.name for f in store.spec("items", v["items"]).features]
        uses_text = bool(item_text_placeholders(item_columns, item_t))  # also: an unknown $name fails here
        if uses_text:
            item_settings["tokenizer"] = cfg.generation.engine.model

        def item_prompts() -> pd.DataFrame:
            count = token_counter(cfg.generation.engine.model) if uses_text else None
            return build_item_prompts(items(), item_t, count, cfg.prompts.max_data_tokens)
        user_settings = {**settings, **({"profiles": "stream", "history_max": cfg.split.history_max}
                                        if cfg.stream is not None else {})}
        refs = {
            "item_prompts": publish_table(cfg, defs.ITEM_PROMPTS, item_prompts,
                                     {"items": v["items"], "template": item_t.sha256, **item_settings}, __name__),
            "user_prompts": publish_table(cfg, defs.USER_PROMPTS, user_prompts,
                                     {**v, "template": user_t.sha256, **user_settings}, __name__),
        }
        return versions_of(refs, rec)


def token_counter(model_ref: str) -> Callable[[str], int]:
    from augment.embedded_models import resolve_llm
    from augment.text.structured import _tokenizer

    tok = _tokenizer(str(resolve_llm(model_ref)))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
