"""Structured LLM features: ONCE-style user interest profiles and NoteLLM-style item tags, as CTR feature tables.

Generation is constrained by a JSON schema (vLLM structured outputs; every string has a maxLength so a small model
cannot loop inside one) and validated again with `jsonschema` after generation. Parsed outputs become:

- ``item_tags``: category (one of TOPICS), category_index (0 = unknown, else 1 + position in TOPICS, for an
  embedding lookup), free tags (lower-cased, <= tag_max_chars), topic_multi_hot (category + tags that are topics);
- ``user_interest``: topics (ordered, most liked first), top_topic, topic_weights (1, 1/2, 1/3 by rank over
  TOPICS), era, cold (history <= cold_user_max_history).

Rejected outputs (schema-invalid after the retries) get no feature row: the point-in-time join then gives the
table default and a missing flag, never an invented profile.

    python -m augment.text.structured        # print both schemas
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd

from augment.kinds import KINDS, StructuredKind
from augment.text.output_validation import ACCEPTED
from configs import GenerationConfig, PromptConfig, StructuredConfig

TOPICS: tuple[str, ...] = ("action", "adventure", "animation", "children", "comedy", "crime", "documentary", "drama",
                           "fantasy", "film-noir", "horror", "musical", "mystery", "romance", "sci-fi", "thriller",
                           "war", "western", "history", "sports")
ERAS: tuple[str, ...] = ("classic", "1960s-1970s", "1980s", "1990s", "recent", "any")
TOPIC_INDEX = {t: i for i, t in enumerate(TOPICS)}


def item_tags_schema(cfg: StructuredConfig) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["category", "tags"], "properties": {
        "category": {"type": "string", "enum": list(TOPICS)},
        "tags": {"type": "array", "minItems": 1, "maxItems": cfg.max_tags,
                 "items": {"type": "string", "minLength": 2, "maxLength": cfg.tag_max_chars}}}}


def user_interest_schema(cfg: StructuredConfig) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["topics", "era"], "properties": {
        "topics": {"type": "array", "minItems": 1, "maxItems": cfg.max_topics,
                   "items": {"type": "string", "enum": list(TOPICS)}},
        "era": {"type": "string", "enum": list(ERAS)}}}


SCHEMAS = {"item_tags": item_tags_schema, "user_interest": user_interest_schema}  # structured kind -> its schema


def schema_for(kind: StructuredKind, cfg: GenerationConfig) -> dict:
    return SCHEMAS[kind](cfg.structured)


# ------------------------------------------------------------------------------------------------------------------
# Prompts: the same fencing as the KAR prompts (augment/text/prompts.py) plus a token cap on the user history.

@lru_cache(maxsize=2)
def tokenizer_for(model_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def cap_history_tokens(hist: pd.DataFrame, items: pd.DataFrame, max_tokens: int, model_ref: str) -> pd.DataFrame:
    """Keep each user's most recent history rows whose rendered lines fit in ``max_tokens`` tokens."""
    from augment.embedded_models import resolve_llm
    from augment.text.prompts import history_line

    if hist.empty:
        return hist
    tok = tokenizer_for(str(resolve_llm(model_ref)))
    titles = items.set_index("item_id")["title"].reindex(hist["item_id"]).to_numpy()
    labels = hist["label"] if "label" in hist else np.ones(len(hist), dtype=np.int8)
    lines = [history_line(t, r, y) for t, r, y in zip(titles, hist["rating"], labels)]
    cost = np.array([len(ids) + 1 for ids in tok(lines, add_special_tokens=False)["input_ids"]])
    hist = hist.assign(_cost=cost).sort_values(["user_id", "timestamp", "item_id"], ascending=[True, False, False])
    used = hist.groupby("user_id", sort=False)["_cost"].cumsum()
    return hist[used <= max_tokens].drop(columns="_cost")


def build_structured_prompts(kind: StructuredKind, prompt_cfg: PromptConfig, gen_cfg: GenerationConfig,
                             items: pd.DataFrame, users: pd.DataFrame | None = None,
                             splits: pd.DataFrame | None = None, cutoffs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Prompt table for one structured kind (user_interest also gets `cutoff` and `cold`)."""
    from augment.text.prompts import build_item_prompts, build_user_prompts, load_template

    k = KINDS[kind]
    if k.entity == "item":
        return build_item_prompts(items, load_template(k.template_of(prompt_cfg)))
    st = gen_cfg.structured
    hist = splits[splits["role"] == "history"] if "role" in splits else splits
    hist = cap_history_tokens(hist, items, prompt_cfg.max_data_tokens, gen_cfg.engine.model)
    cold = cutoffs["n_history"].to_numpy() <= st.cold_user_max_history
    template = k.template_of(prompt_cfg)
    groups = [(cutoffs[~cold], template, False)]
    if st.cold_users == "same":
        groups = [(cutoffs, template, None)]
    elif st.cold_users == "cold_template":
        groups.append((cutoffs[cold], prompt_cfg.user_interest_cold_template, True))
    frames = []
    for subset, template, is_cold in groups:
        if subset.empty:
            continue
        part = build_user_prompts(hist, users, items, subset, load_template(template))
        n_hist = subset.set_index("user_id")["n_history"].reindex(part["user_id"]).to_numpy()
        part["cold"] = n_hist <= st.cold_user_max_history if is_cold is None else is_cold
        frames.append(part)
    out = pd.concat(frames, ignore_index=True).sort_values("user_id", kind="stable").reset_index(drop=True)
    out["cold"] = out["cold"].astype(bool)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Parsed outputs -> feature frames.

def _norm_tag(tag: str, max_chars: int) -> str:
    return " ".join(str(tag).lower().split())[:max_chars]


def item_tag_features(texts: pd.DataFrame, cfg: StructuredConfig) -> pd.DataFrame:
    """item_id, category, category_index, tags, topic_multi_hot, flag; accepted rows only."""
    ok = texts[texts["flag"].isin(ACCEPTED)]
    cats, idx, tags, hots = [], [], [], []
    for text in ok["text"]:
        obj = json.loads(text)
        cat = obj["category"]
        clean = list(dict.fromkeys(t for t in (_norm_tag(x, cfg.tag_max_chars) for x in obj["tags"]) if t))
        hot = np.zeros(len(TOPICS), dtype=np.float32)
        for t in [cat, *clean]:
            if t in TOPIC_INDEX:
                hot[TOPIC_INDEX[t]] = 1.0
        cats.append(cat)
        idx.append(TOPIC_INDEX[cat] + 1)
        tags.append(clean)
        hots.append(hot)
    return pd.DataFrame({"item_id": ok["item_id"].to_numpy(), "category": pd.Series(cats, dtype="str"),
                         "category_index": np.asarray(idx, dtype=np.int64), "tags": tags,
                         "topic_multi_hot": hots, "flag": ok["flag"].to_numpy()})


def user_interest_features(texts: pd.DataFrame, cold: pd.Series) -> pd.DataFrame:
    """user_id, event_timestamp, top_topic, topics (ordered), topic_weights, era, cold, flag; accepted rows only."""
    ok = texts[texts["flag"].isin(ACCEPTED)]
    tops, topics, weights, eras = [], [], [], []
    for text in ok["text"]:
        obj = json.loads(text)
        ordered = list(dict.fromkeys(obj["topics"]))  # the grammar cannot forbid repeats: keep first = rank
        w = np.zeros(len(TOPICS), dtype=np.float32)
        for rank, t in enumerate(ordered):
            w[TOPIC_INDEX[t]] = 1.0 / (rank + 1)
        tops.append(ordered[0])
        topics.append(ordered)
        weights.append(w)
        eras.append(obj["era"])
    return pd.DataFrame({"user_id": ok["user_id"].to_numpy(), "event_timestamp": ok["event_timestamp"].to_numpy(),
                         "top_topic": pd.Series(tops, dtype="str"), "topics": topics, "topic_weights": weights,
                         "era": pd.Series(eras, dtype="str"),
                         "cold": cold.reindex(ok["user_id"]).fillna(False).astype(bool).to_numpy(),
                         "flag": ok["flag"].to_numpy()})


if __name__ == "__main__":
    cfg = StructuredConfig()
    print(json.dumps({kind: schema(cfg) for kind, schema in SCHEMAS.items()}, indent=1))
