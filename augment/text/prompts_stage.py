"""The prompts stage: the prompt table of every free-text kind (augment/kinds.py; the KAR item and user prompts),
rendered from the versioned templates, each built the way its entity's prompts are.

    python -m augment prompts --config configs/ml100k.yaml
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Mapping

import pandas as pd

from augment.kinds import text_kinds
from augment.publishing import kind_off, pinned, publish_table, stats_dir, store_for, versions_of
from common.stage_stats import stage_timer
from configs import RunConfig

log = logging.getLogger(__name__)


def prompts(cfg: RunConfig, inputs: Mapping[str, str]) -> dict[str, str]:
    """Render the prompts of every free-text kind (KAR item and user prompts) from the versioned templates."""
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
        kinds = [k for k in text_kinds() if not kind_off(cfg, k.name)]
        templates = {k.name: load_template(k.template_of(cfg.prompts)) for k in kinds}
        items = functools.cache(lambda: store.read_pandas("items", v["items"]))
        item_columns = functools.cache(lambda: [f.name for f in store.spec("items", v["items"]).features])
        settings = {"max_data_tokens": cfg.prompts.max_data_tokens}

        def user_table(template) -> tuple[Callable[[], pd.DataFrame], dict]:
            def build_table() -> pd.DataFrame:
                build = build_user_prompts
                if cfg.stream is not None:  # one prompt per (user, cutoff): the history strictly before each cutoff
                    build = functools.partial(build_profile_prompts, history_max=cfg.split.history_max)
                return build(store.read_pandas("interaction_splits", v["interaction_splits"]),
                             store.read_pandas("users", v["users"]), items(),
                             store.read_pandas("user_cutoffs", v["user_cutoffs"]), template)

            grounded = "genres" in template.placeholders()  # the history's genre counts, not only its titles
            rec.setdefault("prompt_mode", {})["user"] = {
                "template": template.name, "mode": "grounded (history + genres)" if grounded else "from the history",
                "source_text": ["genres"] if grounded else []}
            user_settings = {**settings, **({"profiles": "stream", "history_max": cfg.split.history_max}
                                            if cfg.stream is not None else {})}
            return build_table, {**v, "template": template.sha256, **user_settings}

        def item_table(template) -> tuple[Callable[[], pd.DataFrame], dict]:
            item_settings = dict(settings)
            # Item text (descriptions) counts against max_data_tokens in the generation model's tokens; the
            # tokenizer is loaded, and named in the recipe, only when the template uses such a column.
            grounded_in = item_text_placeholders(item_columns(), template)  # also: an unknown $name fails here
            uses_text = bool(grounded_in)
            # the report names how the item text was asked for: rewritten from the item's own text, or recalled
            rec.setdefault("prompt_mode", {})["item"] = {
                "template": template.name, "mode": "grounded" if grounded_in else "free recall",
                "source_text": list(grounded_in)}
            if uses_text:
                item_settings["tokenizer"] = cfg.generation.engine.model

            def build_table() -> pd.DataFrame:
                count = token_counter(cfg.generation.engine.model) if uses_text else None
                return build_item_prompts(items(), template, count, cfg.prompts.max_data_tokens)
            return build_table, {"items": v["items"], "template": template.sha256, **item_settings}

        refs = {}
        for k in kinds:
            build_table, recipe = (item_table if k.entity == "item" else user_table)(templates[k.name])
            refs[k.prompt_table] = publish_table(cfg, k.prompt_spec(), build_table, recipe, __name__)
        return versions_of(refs, rec)


def token_counter(model_ref: str) -> Callable[[str], int]:
    from augment.embedded_models import resolve_llm
    from augment.text.structured import tokenizer_for

    tok = tokenizer_for(str(resolve_llm(model_ref)))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
