"""The augment side of the pipeline as plain typed functions, one per stage; the CLI and the DAGs call these.

Every stage reads its inputs from the feature store, writes its outputs there (atomically, versioned by a recipe
of upstream versions + settings + code digest) and records wall time in <workdir>/stats/<stage>.json.

    python -m augment ingest   --config configs/ml100k.yaml
    python -m augment split    --config configs/ml100k.yaml
    python -m augment prompts  --config configs/ml100k.yaml
    python -m augment generate --config configs/ml100k.yaml --kind item [--shard 0]
    python -m augment publish-texts --config configs/ml100k.yaml --kind item
    python -m augment encode   --config configs/ml100k.yaml --kind item|user|item_raw
    # structured features (off unless generation.structured.enabled; --force runs them anyway):
    python -m augment structured-prompts --config configs/ml100k.yaml
    python -m augment generate --config configs/ml100k.yaml --kind item_tags|user_interest [--shard 0]
    python -m augment publish-structured --config configs/ml100k.yaml --kind item_tags|user_interest
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import pandas as pd

from configs import REPO_ROOT, RunConfig
from feature_store.lineage import source_digest, stage_timer
from feature_store import FeatureStore, TableRef
from feature_store import definitions as defs

log = logging.getLogger(__name__)
STATIC_TIME = pd.Timestamp("1970-01-01", tz="UTC")  # item knowledge comes from catalogue data valid at all times


def store_for(cfg: RunConfig) -> FeatureStore:
    return FeatureStore(cfg.workdir_path / "feature_store")


def stats_dir(cfg: RunConfig) -> Path:
    return cfg.workdir_path / "stats"


def _config_json(cfg: RunConfig) -> dict:
    return cfg.model_dump(mode="json")


def _publish(cfg: RunConfig, spec, frame: pd.DataFrame, recipe: dict) -> TableRef:
    recipe = {"table": spec.name, "code": source_digest("augment", "feature_store"), **recipe}
    ref = store_for(cfg).publish(spec, frame, recipe=recipe, config=_config_json(cfg))
    log.info("published %s@%s (%d rows)", ref.name, ref.version, ref.rows)
    return ref


def ingest(cfg: RunConfig) -> dict[str, str]:
    """Raw source -> canonical interactions/items/users tables; a DataError names file, row and column."""
    from augment.ingest import load_dataset, source_names, validate

    with stage_timer(stats_dir(cfg), "ingest") as rec:
        canon = load_dataset(cfg.data, cfg.workdir_path / "cache", base_dir=REPO_ROOT)
        validate(canon, source_names(cfg.data))
        recipe = {"data": cfg.data.model_dump(mode="json")}
        refs = {
            "interactions": _publish(cfg, defs.INTERACTIONS, canon.interactions, recipe),
            "items": _publish(cfg, defs.ITEMS, canon.items, recipe),
            "users": _publish(cfg, defs.USERS, canon.users, recipe),
        }
        rec["rows"] = {k: r.rows for k, r in refs.items()}
    return {k: r.version for k, r in refs.items()}


def split(cfg: RunConfig) -> dict[str, str]:
    """KAR split: prompt history vs CTR samples per user, users into train/valid/test."""
    from augment.split import split_interactions

    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "split") as rec:
        version = store.resolve("interactions")
        rows, cutoffs = split_interactions(store.read_pandas("interactions", version), cfg.split)
        recipe = {"interactions": version, "split": cfg.split.model_dump(mode="json")}
        refs = {"interaction_splits": _publish(cfg, defs.INTERACTION_SPLITS, rows, recipe),
                "user_cutoffs": _publish(cfg, defs.USER_CUTOFFS, cutoffs, recipe)}
        samples = rows[rows["role"] == "sample"]
        rec["rows"] = {"history": int((rows["role"] == "history").sum()),
                       **{f"samples_{s}": int((samples["split"] == s).sum()) for s in ("train", "valid", "test")}}
    return {k: r.version for k, r in refs.items()}


def prompts(cfg: RunConfig) -> dict[str, str]:
    """Render KAR item and user prompts from the versioned templates."""
    from augment.prompts import build_item_prompts, build_user_prompts, load_template

    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "prompts") as rec:
        v = {n: store.resolve(n) for n in ("items", "users", "interaction_splits", "user_cutoffs")}
        items = store.read_pandas("items", v["items"])
        item_t, user_t = load_template(cfg.prompts.item_template), load_template(cfg.prompts.user_template)
        item_p = build_item_prompts(items, item_t)
        user_p = build_user_prompts(store.read_pandas("interaction_splits", v["interaction_splits"]),
                                    store.read_pandas("users", v["users"]), items,
                                    store.read_pandas("user_cutoffs", v["user_cutoffs"]), user_t)
        refs = {
            "item_prompts": _publish(cfg, defs.ITEM_PROMPTS, item_p,
                                     {"items": v["items"], "template": item_t.sha256}),
            "user_prompts": _publish(cfg, defs.USER_PROMPTS, user_p,
                                     {**v, "template": user_t.sha256}),
        }
        rec["rows"] = {k: r.rows for k, r in refs.items()}
    return {k: r.version for k, r in refs.items()}


Kind = Literal["item", "user", "item_tags", "user_interest"]
StructuredKind = Literal["item_tags", "user_interest"]
STRUCTURED = ("item_tags", "user_interest")
_PROMPT_TABLE = {"item": "item_prompts", "user": "user_prompts", "item_tags": "item_tags_prompts",
                 "user_interest": "user_interest_prompts"}
_TEXT_SPEC = {"item": defs.ITEM_KNOWLEDGE_TEXT, "user": defs.USER_PROFILE_TEXT, "item_tags": defs.ITEM_TAGS_TEXT,
              "user_interest": defs.USER_INTEREST_TEXT}
_SKIPPED = {"skipped": "generation.structured.enabled is false"}


def _json_schema(cfg: RunConfig, kind: Kind) -> dict | None:
    if kind not in STRUCTURED:
        return None
    from augment.structured import schema_for

    return schema_for(kind, cfg.generation)


def structured_off(cfg: RunConfig, kind: str, force: bool = False) -> bool:
    """True for a structured kind while generation.structured.enabled is off (its stages do nothing)."""
    return kind in STRUCTURED and not (force or cfg.generation.structured.enabled)


def skipped() -> dict:
    return dict(_SKIPPED)


def structured_prompts(cfg: RunConfig, force: bool = False) -> dict:
    """Render the ONCE-style user interest and NoteLLM-style item tag prompts (cold users per config)."""
    from augment.structured import build_structured_prompts

    if not (force or cfg.generation.structured.enabled):
        return skipped()
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "structured-prompts") as rec:
        v = {n: store.resolve(n) for n in ("items", "users", "interaction_splits", "user_cutoffs")}
        items = store.read_pandas("items", v["items"])
        item_p = build_structured_prompts("item_tags", cfg.prompts, cfg.generation, items)
        user_p = build_structured_prompts("user_interest", cfg.prompts, cfg.generation, items,
                                          store.read_pandas("users", v["users"]),
                                          store.read_pandas("interaction_splits", v["interaction_splits"]),
                                          store.read_pandas("user_cutoffs", v["user_cutoffs"]))
        settings = {"prompts": cfg.prompts.model_dump(mode="json"),
                    "structured": cfg.generation.structured.model_dump(mode="json")}
        refs = {"item_tags_prompts": _publish(cfg, defs.ITEM_TAGS_PROMPTS, item_p, {"items": v["items"], **settings}),
                "user_interest_prompts": _publish(cfg, defs.USER_INTEREST_PROMPTS, user_p, {**v, **settings})}
        rec["rows"] = {k: r.rows for k, r in refs.items()}
        rec["cold_users"] = int(user_p["cold"].sum())
    return {k: r.version for k, r in refs.items()}


def generation_cache(cfg: RunConfig) -> Path:
    return cfg.workdir_path / "generation_cache"


def generate(cfg: RunConfig, kind: Kind, shard: int | None = None, force: bool = False) -> list[dict]:
    """Generate one shard (or every shard in turn) with vLLM; finished batches are committed as they complete.

    Each shard's stats (prompts, skipped, generated, LLM calls, retries, flags, tokens, tok/s, prefix-cache hit
    rate) go to <workdir>/stats/generate-<kind>-<shard>.json."""
    from augment.generate import generate_shard, stats_dict
    from augment.llm_engine import model_id

    if structured_off(cfg, kind, force):
        return [skipped()]
    store = store_for(cfg)
    prompt_frame = store.read_pandas(_PROMPT_TABLE[kind])
    model = model_id(cfg.generation.engine)
    schema = _json_schema(cfg, kind)
    out = []
    for s in range(cfg.generation.shards) if shard is None else [shard]:
        with stage_timer(stats_dir(cfg), f"generate-{kind}-{s:03d}") as rec:
            stats = generate_shard(prompt_frame, kind, s, cfg.generation, generation_cache(cfg), model,
                                   json_schema=schema)
            rec.update(stats_dict(stats))
        out.append(rec)
    return out


def _publish_text_table(cfg: RunConfig, kind: Kind, rec: dict) -> tuple[pd.DataFrame, pd.DataFrame, TableRef]:
    from augment.generate import collect_texts, flag_counts, sampling_settings
    from augment.llm_engine import model_id

    store = store_for(cfg)
    pv = store.resolve(_PROMPT_TABLE[kind])
    prompt_frame = store.read_pandas(_PROMPT_TABLE[kind], pv)
    model = model_id(cfg.generation.engine)
    user_side = kind in ("user", "user_interest")
    event_ts = prompt_frame["cutoff"] if user_side else pd.Series(STATIC_TIME, index=prompt_frame.index)
    schema = _json_schema(cfg, kind)
    texts = collect_texts(prompt_frame, kind, cfg.generation, generation_cache(cfg), model, event_ts, schema)
    ref = _publish(cfg, _TEXT_SPEC[kind], texts, {
        "prompts": pv, "model": model, "engine": cfg.generation.engine.model_dump(mode="json"),
        "sampling": sampling_settings(cfg.generation, kind, schema),
        "validation": cfg.generation.validation.model_dump(mode="json")})
    rec["rows"] = ref.rows
    rec["finish_length"] = int((texts["finish_reason"] == "length").sum())
    rec["validation"] = flag_counts(texts)
    # Kept for the retrain report: accepted-but-truncated rows, and rows published with text "" (rejected).
    rec["truncated"] = rec["validation"]["flags"].get("truncated", 0)
    rec["empty"] = rec["validation"]["rejected"]
    log.info("%s text: %s", kind, rec["validation"])
    return prompt_frame, texts, ref


def publish_texts(cfg: RunConfig, kind: Kind) -> str:
    """Collect every shard's output into the versioned *_text table; stats record the validation counts."""
    with stage_timer(stats_dir(cfg), f"publish-{kind}-text") as rec:
        _, _, ref = _publish_text_table(cfg, kind, rec)
    return ref.version


def publish_structured(cfg: RunConfig, kind: StructuredKind, force: bool = False) -> dict:
    """Collect the structured outputs into *_text (raw JSON + flags) and the categorical/multi-hot feature table."""
    from augment.structured import TOPICS, item_tag_features, user_interest_features

    if structured_off(cfg, kind, force):
        return skipped()
    with stage_timer(stats_dir(cfg), f"publish-{kind}") as rec:
        prompt_frame, texts, text_ref = _publish_text_table(cfg, kind, rec)
        if kind == "item_tags":
            spec, frame = defs.item_tags(len(TOPICS)), item_tag_features(texts, cfg.generation.structured)
        else:
            spec = defs.user_interest(len(TOPICS))
            frame = user_interest_features(texts, prompt_frame.set_index("user_id")["cold"])
            frame["created_timestamp"] = pd.Timestamp.now(tz="UTC")
        ref = _publish(cfg, spec, frame, {f"{kind}_text": text_ref.version, "topics": list(TOPICS)})
        rec["feature_rows"] = ref.rows
    return {f"{kind}_text": text_ref.version, kind: ref.version}


EncodeKind = Literal["item", "user", "item_raw"]


def encode(cfg: RunConfig, kind: EncodeKind) -> str:
    """Encode a text table (or the raw item metadata, the no-LLM control) into a vector table."""
    from augment.encode import dimension, encode_texts, encoder_id, raw_item_text
    from augment.output_validation import ACCEPTED

    store = store_for(cfg)
    encoder = encoder_id(cfg.encode)
    with stage_timer(stats_dir(cfg), f"encode-{kind}") as rec:
        if kind == "item_raw":
            source_version = store.resolve("items")
            items = store.read_pandas("items", source_version)
            texts = [raw_item_text(t, y, g) for t, y, g in zip(items["title"], items["year"], items["genres"])]
            frame = pd.DataFrame({"item_id": items["item_id"].to_numpy()})
            spec = defs.item_raw_emb(dimension(cfg.encode))
            source_name = "items"
        else:
            source_name = "item_knowledge_text" if kind == "item" else "user_profile_text"
            source_version = store.resolve(source_name)
            src = store.read_pandas(source_name, source_version)
            # Rejected outputs carry text "" and a flag: they get no vector row, so the join gives the default
            # vector and a missing flag instead of an embedding of nothing.
            if "flag" in src:
                rec["skipped_rejected"] = int((~src["flag"].isin(ACCEPTED)).sum())
                src = src[src["flag"].isin(ACCEPTED)].reset_index(drop=True)
            texts = src["text"].tolist()
            key = "item_id" if kind == "item" else "user_id"
            frame = pd.DataFrame({key: src[key].to_numpy(), "event_timestamp": src["event_timestamp"],
                                  "created_timestamp": pd.Timestamp.now(tz="UTC")})
            spec = (defs.item_knowledge_emb if kind == "item" else defs.user_profile_emb)(dimension(cfg.encode))
        vectors = encode_texts(texts, cfg.encode)
        frame["emb"] = list(vectors)
        frame["encoder"] = encoder
        frame["source_hash"] = [_text_hash(t) for t in texts]
        ref = _publish(cfg, spec, frame, {source_name: source_version, "encoder": encoder,
                                          "encode": cfg.encode.model_dump(mode="json")})
        rec["rows"] = ref.rows
        rec["dim"] = int(vectors.shape[1])
        rec["encoder"] = encoder
    return ref.version


def _text_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["ingest", "split", "prompts", "generate", "publish_texts", "encode", "structured_prompts",
           "publish_structured", "store_for", "stats_dir"]


def run_all(cfg: RunConfig) -> dict:
    """Every augment stage in order in this process (the DAG runs the same functions as separate tasks)."""
    out: dict = {"ingest": ingest(cfg), "split": split(cfg), "prompts": prompts(cfg)}
    for kind in ("item", "user"):
        generate(cfg, kind)
        out[f"{kind}_text"] = publish_texts(cfg, kind)
    for kind in ("item", "user", "item_raw"):
        out[f"{kind}_emb"] = encode(cfg, kind)
    if cfg.generation.structured.enabled:
        out["structured_prompts"] = structured_prompts(cfg)
        for kind in STRUCTURED:
            generate(cfg, kind)
            out[kind] = publish_structured(cfg, kind)
    return out
