"""The augment side of the pipeline as plain typed functions, one per stage; the CLI and the DAGs call these.

Every stage takes the exact versions of the tables it reads (`inputs`: table name -> version id) and returns the
versions it wrote; nothing here resolves `latest` (the CLI does, for people, when no --input is given). A table's
version is the hash of its recipe: its input versions, the settings that shape it and a digest of the code that
computes it (feature_store/lineage.py). When that version is already in the store it is reused, not recomputed, so
a re-run of the same inputs with the same settings writes nothing and a version id always names the same bytes.
Wall time goes to <workdir>/stats/<stage>.json.

    python -m augment ingest   --config configs/ml100k.yaml
    python -m augment split    --config configs/ml100k.yaml [--input interactions=<version>]
    python -m augment prompts  --config configs/ml100k.yaml
    python -m augment generate --config configs/ml100k.yaml --kind item [--shard 0]
    python -m augment publish-texts --config configs/ml100k.yaml --kind item
    # bring your own text (augment/external_text.py), once by hand or per run via generation.external.<kind>:
    python -m augment import-text --config configs/ml100k.yaml --kind item|user --file F [--source NAME]
    python -m augment encode   --config configs/ml100k.yaml --kind item|user|item_raw
    # structured features (off unless generation.structured.enabled; --force runs them anyway):
    python -m augment structured-prompts --config configs/ml100k.yaml
    python -m augment generate --config configs/ml100k.yaml --kind item_tags|user_interest [--shard 0]
    python -m augment publish-structured --config configs/ml100k.yaml --kind item_tags|user_interest
    # behaviour-aligned encoders (off unless behaviour_encoder.enabled; --force runs it anyway):
    python -m augment behaviour-encoder --config configs/ml100k.yaml
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import pandas as pd

from configs import REPO_ROOT, ExternalText, RunConfig, open_run_store
from feature_store import FeatureStore, TableRef
from feature_store import definitions as defs
from feature_store.files import digest
from feature_store.lineage import code_digest
from feature_store.pins import require_versions
from feature_store.stage_stats import stage_timer
from feature_store.store import FORMAT_VERSION, version_id

log = logging.getLogger(__name__)
STATIC_TIME = pd.Timestamp("1970-01-01", tz="UTC")  # item knowledge comes from catalogue data valid at all times

Kind = Literal["item", "user", "item_tags", "user_interest"]
StructuredKind = Literal["item_tags", "user_interest"]
EncodeKind = Literal["item", "user", "item_raw"]
STRUCTURED = ("item_tags", "user_interest")
PROMPT_TABLE = {"item": "item_prompts", "user": "user_prompts", "item_tags": "item_tags_prompts",
                "user_interest": "user_interest_prompts"}
TEXT_TABLE = {"item": "item_knowledge_text", "user": "user_profile_text", "item_tags": "item_tags_text",
              "user_interest": "user_interest_text"}
EXTERNAL_CHECK = {"item": "items", "user": "user_cutoffs"}  # what external ids are checked against
ID_MAP = defs.ID_MAPS  # original id -> key (augment/id_keys.py)
ENCODE_SOURCE = {"item": "item_knowledge_text", "user": "user_profile_text", "item_raw": "items"}
_TEXT_SPEC = {"item": defs.ITEM_KNOWLEDGE_TEXT, "user": defs.USER_PROFILE_TEXT, "item_tags": defs.ITEM_TAGS_TEXT,
              "user_interest": defs.USER_INTEREST_TEXT}
_ATTRIBUTES = ("items", "users", "interaction_splits", "user_cutoffs")
_SKIPPED = {"skipped": "generation.structured.enabled is false"}
# Pairs from the splits; the LLM item text and the raw item text (the control) each tune and feed their own encoder.
BEHAVIOUR_INPUTS = ("interaction_splits", "item_knowledge_text", "items")
# The modules whose code shapes every table (schema checks and the Parquet writer's declared format).
_WRITER = ("augment.stages", "feature_store.table_spec", "feature_store.definitions")


def external_text(cfg: RunConfig | None, kind: str | None) -> ExternalText | None:
    """The external text file configured for `kind` (generation.external), if any."""
    if cfg is None or kind not in ("item", "user"):
        return None
    return getattr(cfg.generation.external, kind)


def stage_inputs(stage: str, kind: str | None = None, cfg: RunConfig | None = None) -> tuple[str, ...]:
    """The tables a stage reads: what its `inputs` must pin (and what the CLI resolves for people). `cfg` matters
    for publish-texts only: external text is checked against items/user_cutoffs (the prompt table stays pinned so
    the DAG wiring does not depend on the config)."""
    if stage == "import-text":
        return (EXTERNAL_CHECK[kind], ID_MAP[kind])
    if stage == "publish-texts" and external_text(cfg, kind):
        return (PROMPT_TABLE[kind], EXTERNAL_CHECK[kind], ID_MAP[kind])
    if stage == "generation-variance":
        return (PROMPT_TABLE["item"],)
    if stage in ("generate", "publish-texts", "publish-structured"):
        return (PROMPT_TABLE[kind],)
    if stage == "encode":
        return (ENCODE_SOURCE[kind],)
    if stage == "behaviour-encoder":
        return BEHAVIOUR_INPUTS
    return {"ingest": (), "split": ("interactions",), "prompts": _ATTRIBUTES,
            "structured-prompts": _ATTRIBUTES}[stage]


def pinned(stage: str, inputs: Mapping[str, str] | None, kind: str | None = None,
           cfg: RunConfig | None = None) -> dict[str, str]:
    """The exact input versions a stage needs out of `inputs`; a missing one is an error, never `latest`."""
    return require_versions(stage_inputs(stage, kind, cfg), inputs,
                            who=f"stage {stage}{' ' + kind if kind else ''}")


def store_for(cfg: RunConfig) -> FeatureStore:
    """The run's feature store (feature_store.uri; default <workdir>/feature_store)."""
    return open_run_store(cfg)


def stats_dir(cfg: RunConfig) -> Path:
    return cfg.stats_path


def generation_cache(cfg: RunConfig) -> Path:
    return cfg.workdir_path / "generation_cache"


def _full_recipe(table: str, recipe: dict, code: tuple[str, ...]) -> dict:
    return {"table": table, "code": code_digest(*code, *_WRITER), "format": FORMAT_VERSION, **recipe}


def _reuse(cfg: RunConfig, table: str, recipe: dict, code: tuple[str, ...]) -> TableRef | None:
    """The version `_publish` would reuse (made latest, as `_publish` does), found before anything that only the
    table's spec needs (an encoder, for its dimension) is loaded; None when it has to be built."""
    ref = store_for(cfg).reuse(table, version_id(_full_recipe(table, recipe, code)))
    if ref is not None:
        log.info("reused %s@%s (%d rows)", ref.name, ref.version, ref.rows)
    return ref


def _publish(cfg: RunConfig, spec, build: Callable[[], pd.DataFrame], recipe: dict,
             code: tuple[str, ...], build_stats: Callable[[], dict] | None = None) -> TableRef:
    """Publish the table `build()` makes under the version of its recipe; if that version exists, reuse it and
    never call `build`. `build_stats()` (asked after `build`) goes into the manifest."""
    recipe = _full_recipe(spec.name, recipe, code)
    store = store_for(cfg)
    ref = store.publish(spec, build, recipe=recipe, config=cfg.model_dump(mode="json"), build_stats=build_stats)
    log.info("%s %s@%s (%d rows)", "published" if ref.written else "reused", ref.name, ref.version, ref.rows)
    return ref


def _settings(section, *added: str) -> dict:
    """A config section for a recipe, minus the `added` settings while they hold their defaults: a setting that
    was introduced later does not change the versions of tables made without it."""
    out = section.model_dump(mode="json")
    for name in added:
        if getattr(section, name) == type(section).model_fields[name].get_default(call_default_factory=True):
            out.pop(name)
    return out


def _versions(refs: Mapping[str, TableRef], rec: dict) -> dict[str, str]:
    rec["rows"] = {k: r.rows for k, r in refs.items()}
    rec["reused"] = sorted(k for k, r in refs.items() if not r.written)
    return {k: r.version for k, r in refs.items()}


def ingest(cfg: RunConfig) -> dict[str, str]:
    """Raw source -> canonical interactions/items/users tables; a DataError names file, row and column."""
    from augment.ingest import load_dataset, partition_fingerprint, source_fingerprint, source_names, validate

    with stage_timer(stats_dir(cfg), "ingest") as rec:
        @functools.cache
        def canon():
            data = load_dataset(cfg.data, cfg.workdir_path / "cache", base_dir=REPO_ROOT, stream=cfg.stream)
            validate(data, source_names(cfg.data), cfg.data.item_text_columns)
            return data

        # The recipe names the source by content, so a changed file is a new version and an unchanged one is not
        # even parsed again.
        recipe = {"data": _settings(cfg.data, "item_text_columns"),
                  "source": source_fingerprint(cfg.data, cfg.workdir_path / "cache", base_dir=REPO_ROOT)}
        code = ("augment.ingest", "augment.movielens")
        # A log in daily partitions (stream.partitions): the partitions read as of this run's end shape the tables
        # made from the log (interactions, and the id maps, which hold the log's ids) but not the catalogue.
        log_recipe = recipe
        if cfg.stream is not None and cfg.stream.partitions is not None:
            log_recipe = {**recipe, "partitions": partition_fingerprint(cfg.data, cfg.stream, base_dir=REPO_ROOT)}
        # A daily run sees the log as of its interval end and nothing later; the catalogue tables do not depend on
        # the interval, so they keep their versions (and item knowledge is reused) while the catalogue is unchanged.
        end = cfg.stream.require_end() if cfg.stream else None
        inter_recipe = {**log_recipe, "end": end.isoformat()} if end else log_recipe

        def interactions() -> pd.DataFrame:
            frame = canon().interactions
            return frame if end is None else frame[frame["timestamp"] < end].reset_index(drop=True)

        def interaction_stats() -> dict:
            stats = dict(canon().stats)
            if end is not None:
                stats["end"] = end.isoformat()
                stats["rows_as_of_end"] = int((canon().interactions["timestamp"] < end).sum())
            return stats

        refs = {
            "interactions": _publish(cfg, defs.INTERACTIONS, interactions, inter_recipe, code,
                                     build_stats=interaction_stats),
            "items": _publish(cfg, defs.items_spec(cfg.data.item_text_columns), lambda: canon().items, recipe, code),
            "users": _publish(cfg, defs.USERS, lambda: canon().users, recipe, code),
            defs.USER_ID_MAP.name: _publish(cfg, defs.USER_ID_MAP, lambda: canon().id_maps["user"], log_recipe,
                                            code),
            defs.ITEM_ID_MAP.name: _publish(cfg, defs.ITEM_ID_MAP, lambda: canon().id_maps["item"], log_recipe,
                                            code),
        }
        # What ingest did to the data (duplicates dropped, id types), also when this run reused the tables.
        rec["data"] = store_for(cfg).manifest("interactions", refs["interactions"].version).get("build_stats", {})
        log.info("ingest: %s", rec["data"])
        return _versions(refs, rec)


def split(cfg: RunConfig, inputs: Mapping[str, str]) -> dict[str, str]:
    """KAR split: prompt history vs CTR samples per user, users into train/valid/test."""
    from augment.split import split_interactions
    from augment.stream_split import stream_split

    v = pinned("split", inputs)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), "split") as rec:
        negatives = cfg.data.feedback == "positive_only"

        @functools.cache
        def result():
            frame = store.read_pandas("interactions", v["interactions"])
            if cfg.stream is not None:
                return stream_split(frame, cfg.split, cfg.stream)
            return split_interactions(frame, cfg.split, sample_negatives=negatives)

        split_settings = cfg.split.model_dump(mode="json")
        if not negatives:  # the negative-sampling settings shape nothing here: keep the version
            split_settings.pop("negatives")
        recipe = {**v, "split": split_settings, "negatives": negatives}
        code = ("augment.split",)
        if cfg.stream is not None:
            recipe["stream"] = cfg.stream.model_dump(mode="json")
            code = ("augment.stream_split",)
        refs = {"interaction_splits": _publish(cfg, defs.INTERACTION_SPLITS, lambda: result()[0], recipe, code,
                                               build_stats=lambda: {"negatives": result()[0].attrs.get("negatives")}),
                "user_cutoffs": _publish(cfg, defs.USER_CUTOFFS, lambda: result()[1], recipe, code)}
        built = store.manifest("interaction_splits", refs["interaction_splits"].version).get("build_stats", {})
        if built.get("negatives"):
            rec["negatives"] = built["negatives"]
            log.info("split: sampled negatives %s", built["negatives"])
        return _versions(refs, rec)


def prompts(cfg: RunConfig, inputs: Mapping[str, str]) -> dict[str, str]:
    """Render KAR item and user prompts from the versioned templates."""
    from augment.prompts import (build_item_prompts, build_profile_prompts, build_user_prompts,
                                 item_text_placeholders, load_template)

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
            count = _token_counter(cfg.generation.engine.model) if uses_text else None
            return build_item_prompts(items(), item_t, count, cfg.prompts.max_data_tokens)

        code = ("augment.prompts",)
        user_settings = {**settings, **({"profiles": "stream", "history_max": cfg.split.history_max}
                                        if cfg.stream is not None else {})}
        refs = {
            "item_prompts": _publish(cfg, defs.ITEM_PROMPTS, item_prompts,
                                     {"items": v["items"], "template": item_t.sha256, **item_settings}, code),
            "user_prompts": _publish(cfg, defs.USER_PROMPTS, user_prompts,
                                     {**v, "template": user_t.sha256, **user_settings}, code),
        }
        return _versions(refs, rec)


def _token_counter(model_ref: str) -> Callable[[str], int]:
    from augment.embedded_models import resolve_llm
    from augment.structured import _tokenizer

    tok = _tokenizer(str(resolve_llm(model_ref)))
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


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


def skipped_external(cfg: RunConfig, kind: str) -> dict:
    return {"skipped": f"generation.external.{kind} is set: publish-texts imports {external_text(cfg, kind).path}"}


def structured_prompts(cfg: RunConfig, inputs: Mapping[str, str], force: bool = False) -> dict:
    """Render the ONCE-style user interest and NoteLLM-style item tag prompts (cold users per config)."""
    from augment.structured import build_structured_prompts

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
        code = ("augment.structured", "augment.prompts")
        refs = {"item_tags_prompts": _publish(
                    cfg, defs.ITEM_TAGS_PROMPTS,
                    lambda: build_structured_prompts("item_tags", cfg.prompts, cfg.generation, items()),
                    {"items": v["items"], **settings}, code),
                "user_interest_prompts": _publish(cfg, defs.USER_INTEREST_PROMPTS, user_prompts, {**v, **settings},
                                                  code)}
        return _versions(refs, rec)


def generate(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str], shard: int | None = None,
             force: bool = False, num_shards: int | None = None) -> list[dict]:
    """Generate one shard (or every shard in turn) of the pinned prompt table through generation.backend;
    finished rows are committed to the generation cache in batches (that cache is what a re-run resumes from).

    Each shard's stats (prompts, skipped, generated, LLM calls, retries, flags, tokens, tok/s, prefix-cache hit
    rate) go to <workdir>/stats/generate-<kind>-<shard>.json."""
    from augment.generate import generate_shard, stats_dict
    from augment.chat_backend import model_id_for

    if structured_off(cfg, kind, force):
        return [skipped()]
    if external_text(cfg, kind):
        return [skipped_external(cfg, kind)]
    v = pinned("generate", inputs, kind)
    prompt_frame = store_for(cfg).read_pandas(PROMPT_TABLE[kind], v[PROMPT_TABLE[kind]])
    model = model_id_for(cfg.generation)
    schema = _json_schema(cfg, kind)
    out = []
    num_shards = num_shards or cfg.generation.shards
    for s in range(num_shards) if shard is None else [shard]:
        with stage_timer(stats_dir(cfg), f"generate-{kind}-{s:03d}") as rec:
            stats = generate_shard(prompt_frame, kind, s, cfg.generation, generation_cache(cfg), model,
                                   json_schema=schema, num_shards=num_shards)
            rec.update(stats_dict(stats))
        out.append(rec)
    return out


def pending_prompts(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str], shard: int | None = None,
                    num_shards: int | None = None) -> int:
    """How many prompts of a shard (None: of the whole table) have no cached output yet."""
    from augment.generate import pending
    from augment.chat_backend import model_id_for

    v = pinned("generate", inputs, kind)
    prompt_frame = store_for(cfg).read_pandas(PROMPT_TABLE[kind], v[PROMPT_TABLE[kind]])
    _, todo = pending(prompt_frame, kind, shard, cfg.generation, generation_cache(cfg),
                      model_id_for(cfg.generation), _json_schema(cfg, kind), num_shards)
    return len(todo)


def plan_shards(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str]) -> list[dict]:
    """The generation shards of this run, [{"shard": s, "num_shards": n}, ...]: generation.shards of them, or ONE
    when fewer prompts than one batch (generation.batch_size) are new, as on most days of a daily run, since
    every shard starts its own engine (20-45 s on CPU). Decided once per run, so all shards agree on the split;
    the cache is keyed by prompt, so a resumed run may split differently and loses nothing."""
    n = cfg.generation.shards
    if not structured_off(cfg, kind) and not external_text(cfg, kind) and n > 1:
        if pending_prompts(cfg, kind, inputs) < cfg.generation.batch_size:
            n = 1
    # A re-run of the interval with fewer shards must not leave an earlier plan's extra shards in its stats.
    for stale in stats_dir(cfg).glob(f"generate-{kind}-*.json"):
        if int(stale.stem.rsplit("-", 1)[1]) >= n:
            stale.unlink(missing_ok=True)
    return [{"shard": s, "num_shards": n} for s in range(n)]


def _text_table(cfg: RunConfig, kind: Kind, v: Mapping[str, str], rec: dict) -> tuple[Callable, TableRef]:
    """Publish (or reuse) the *_text table of `kind`; returns a loader of (prompts, texts) and the table."""
    from augment.generate import collect_texts, flag_counts, output_settings
    from augment.chat_backend import model_id_for

    store = store_for(cfg)
    prompt_table = PROMPT_TABLE[kind]
    model = model_id_for(cfg.generation)
    schema = _json_schema(cfg, kind)
    prompt_frame = functools.cache(lambda: store.read_pandas(prompt_table, v[prompt_table]))

    def texts() -> pd.DataFrame:
        frame = prompt_frame()
        user_side = kind in ("user", "user_interest")
        event_ts = frame["cutoff"] if user_side else pd.Series(STATIC_TIME, index=frame.index)
        out = collect_texts(frame, kind, cfg.generation, generation_cache(cfg), model, event_ts, schema)
        rec["finish_length"] = int((out["finish_reason"] == "length").sum())
        rec["validation"] = flag_counts(out)
        # Kept for the retrain report: accepted-but-truncated rows, and rows published with text "" (rejected).
        rec["truncated"] = rec["validation"]["flags"].get("truncated", 0)
        rec["empty"] = rec["validation"]["rejected"]
        log.info("%s text: %s", kind, rec["validation"])
        return out

    # The recipe holds exactly what the generation cache key holds (augment/generate.py output_settings).
    recipe = {"prompts": v[prompt_table], "output": output_settings(cfg.generation, kind, model, schema)}
    ref = _publish(cfg, _TEXT_SPEC[kind], texts, recipe,
                   ("augment.generate", "augment.output_validation", "augment.llm_engine"))
    return prompt_frame, ref


def publish_texts(cfg: RunConfig, kind: Kind, inputs: Mapping[str, str]) -> dict[str, str]:
    """Collect every shard's output into the versioned *_text table; stats record the validation counts.

    With generation.external.<kind> set, the configured file is imported instead (see `import_text`)."""
    v = pinned("publish-texts", inputs, kind, cfg)
    with stage_timer(stats_dir(cfg), f"publish-{kind}-text") as rec:
        ext = external_text(cfg, kind)
        if ext is not None:
            path = Path(ext.path).expanduser()
            ref = _external_table(cfg, kind, path if path.is_absolute() else REPO_ROOT / path, ext.source, v, rec)
        else:
            _, ref = _text_table(cfg, kind, v, rec)
        return _versions({TEXT_TABLE[kind]: ref}, rec)


def _external_table(cfg: RunConfig, kind: str, path: Path, source: str | None, v: Mapping[str, str],
                    rec: dict) -> TableRef:
    """Publish (or reuse) the *_text table of `kind` from an external file, checked against the pinned
    items/user_cutoffs version; the recipe names the file by name and sha256, the source and that version."""
    from augment.data_errors import DataError
    from augment.external_text import check_source_name, load_external_text
    from augment.generate import flag_counts
    from feature_store.files import file_sha256

    if not path.is_file():
        raise DataError(f"file not found ({path})", file=path.name)
    source = check_source_name(source or path.stem)
    check = EXTERNAL_CHECK[kind]
    store = store_for(cfg)

    def build() -> pd.DataFrame:
        table = store.read_pandas(check, v[check])
        key = "item_id" if kind == "item" else "user_id"
        default = STATIC_TIME if kind == "item" else table.set_index("user_id")["cutoff"]
        id_map = ID_MAP[kind]
        out = load_external_text(path, kind, table[key], default, source, cfg.generation.validation,
                                 known_label=f"{check}@{v[check]}", id_map=store.read_pandas(id_map, v[id_map]),
                                 map_label=f"{id_map}@{v[id_map]}")
        rec["validation"] = flag_counts(out)
        rec["coverage"] = {"rows": len(out), f"{check}_rows": len(table)}
        log.info("%s text from %s: %s", kind, path.name, rec["validation"])
        return out

    recipe = {"external": {"file": path.name, "sha256": file_sha256(path), "source": source}, check: v[check],
              ID_MAP[kind]: v[ID_MAP[kind]],
              "validation": cfg.generation.validation.model_dump(mode="json")}
    rec["external"] = recipe["external"]
    return _publish(cfg, _TEXT_SPEC[kind], build, recipe,
                    ("augment.external_text", "augment.output_validation", "augment.ingest"))


def import_text(cfg: RunConfig, kind: Literal["item", "user"], path: str | Path, inputs: Mapping[str, str],
                source: str | None = None) -> dict[str, str]:
    """Publish a CSV/Parquet file of item or user text as item_knowledge_text / user_profile_text, validated like
    generated text (augment/external_text.py); `inputs` pins the items (item) or user_cutoffs (user) version."""
    v = pinned("import-text", inputs, kind)
    with stage_timer(stats_dir(cfg), f"import-{kind}-text") as rec:
        ref = _external_table(cfg, kind, Path(path).expanduser().resolve(), source, v, rec)
        return _versions({TEXT_TABLE[kind]: ref}, rec)


def publish_structured(cfg: RunConfig, kind: StructuredKind, inputs: Mapping[str, str],
                       force: bool = False) -> dict:
    """Collect the structured outputs into *_text (raw JSON + flags) and the categorical/multi-hot feature table."""
    from augment.structured import TOPICS, item_tag_features, user_interest_features

    if structured_off(cfg, kind, force):
        return skipped()
    v = pinned("publish-structured", inputs, kind)
    store = store_for(cfg)
    with stage_timer(stats_dir(cfg), f"publish-{kind}") as rec:
        prompt_frame, text_ref = _text_table(cfg, kind, v, rec)
        texts = functools.cache(lambda: store.read_pandas(text_ref.name, text_ref.version))
        if kind == "item_tags":
            spec = defs.item_tags(len(TOPICS))

            def build() -> pd.DataFrame:
                return item_tag_features(texts(), cfg.generation.structured)
        else:
            spec = defs.user_interest(len(TOPICS))

            def build() -> pd.DataFrame:
                t = texts()
                frame = user_interest_features(t, prompt_frame().set_index("user_id")["cold"])
                # The text's created_timestamp (its cutoff: text tables carry no generation clock, augment/generate.py).
                frame["created_timestamp"] = t.set_index("user_id")["created_timestamp"].reindex(
                    frame["user_id"]).to_numpy()
                return frame
        recipe = {TEXT_TABLE[kind]: text_ref.version, "topics": list(TOPICS),
                  "structured": cfg.generation.structured.model_dump(mode="json")}
        ref = _publish(cfg, spec, build, recipe, ("augment.structured",))
        return _versions({TEXT_TABLE[kind]: text_ref, kind: ref}, rec)


def encode(cfg: RunConfig, kind: EncodeKind, inputs: Mapping[str, str]) -> dict[str, str]:
    """Encode a text table (or the raw item metadata, the no-LLM control) into a vector table."""
    from augment.encode import dimension, encode_texts, encoder_id, raw_item_texts
    from augment.encode_cache import EncodeCache
    from augment.output_validation import ACCEPTED

    v = pinned("encode", inputs, kind)
    source_name = ENCODE_SOURCE[kind]
    store = store_for(cfg)
    encoder = encoder_id(cfg.encode)
    # Shared by all kinds and versions: a new version of a text table re-encodes only the texts it changed.
    cache = EncodeCache(cfg.workdir_path / "encode_cache", cfg.encode)
    table = {"item": "item_knowledge_emb", "user": "user_profile_emb", "item_raw": "item_raw_emb"}[kind]
    with stage_timer(stats_dir(cfg), f"encode-{kind}") as rec:
        def build() -> pd.DataFrame:
            src = store.read_pandas(source_name, v[source_name])
            if kind == "item_raw":
                texts = raw_item_texts(src, cfg.encode.raw_item_columns)
                frame = pd.DataFrame({"item_id": src["item_id"].to_numpy()})
            else:
                # Rejected outputs carry text "" and a flag: they get no vector row, so the join gives the default
                # vector and a missing flag instead of an embedding of nothing.
                if "flag" in src:
                    rec["skipped_rejected"] = int((~src["flag"].isin(ACCEPTED)).sum())
                    src = src[src["flag"].isin(ACCEPTED)].reset_index(drop=True)
                texts = src["text"].tolist()
                key = "item_id" if kind == "item" else "user_id"
                # created_timestamp: when the text was generated (from the input table, not the clock).
                frame = pd.DataFrame({key: src[key].to_numpy(), "event_timestamp": src["event_timestamp"],
                                      "created_timestamp": src["created_timestamp"]})
            # dim is set below before _publish calls build; it shapes the result only when there are no texts.
            vectors, counts = cache.vectors(texts, lambda missing: encode_texts(missing, cfg.encode), dim)
            rec.update(counts)
            frame["emb"] = list(vectors)
            frame["encoder"] = encoder
            frame["source_hash"] = [digest(t) for t in texts]
            rec["dim"] = int(vectors.shape[1])
            return frame

        spec = {"item": defs.item_knowledge_emb, "user": defs.user_profile_emb, "item_raw": defs.item_raw_emb}[kind]
        # raw_item_columns shapes only the item_raw text: the other kinds' versions ignore it.
        encode_settings = (_settings(cfg.encode, "raw_item_columns") if kind == "item_raw"
                           else cfg.encode.model_dump(mode="json", exclude={"raw_item_columns"}))
        recipe, code = {**v, "encoder": encoder, "encode": encode_settings}, ("augment.encode", "augment.encode_cache")
        # Nothing new: reused without loading the encoder (it would only give the vector width). A new version
        # takes the width from the cache when it can, so one whose texts are all cached loads no encoder either.
        ref = _reuse(cfg, table, recipe, code)
        if ref is None:
            dim = cache.dim() or dimension(cfg.encode)
            ref = _publish(cfg, spec(dim), build, recipe, code)
        rec["encoder"] = encoder
        return _versions({table: ref}, rec)


def behaviour_encoder(cfg: RunConfig, inputs: Mapping[str, str], force: bool = False) -> dict:
    """NoteLLM-style behaviour alignment (augment/behaviour_encoder.py): encode.model tuned on item pairs that
    co-occur in training interactions, twice with the same pairs and settings (on the item knowledge text and on
    the raw item text), each copy encoding the text it was tuned on into item_knowledge_emb_bt / item_raw_emb_bt.
    Head mode (behaviour_encoder.mode) encodes each text once with the frozen encoder and writes the table by
    applying the trained head to those vectors; full mode encodes the table with the fine-tuned model.
    A no-op ({"skipped": ...}) unless behaviour_encoder.enabled or `force`."""
    from augment.behaviour_encoder import (base_vectors, encoder_version, finetune, head_encode, mine_pairs,
                                           pair_settings, train_settings)
    import time

    import numpy as np
    from augment.embedded_models import resolve_encoder
    from augment.encode import dimension, encode_texts, encoder_id, raw_item_texts
    from augment.output_validation import ACCEPTED

    bc = cfg.behaviour_encoder
    if not (bc.enabled or force):
        return {"skipped": "behaviour_encoder.enabled is false"}
    v = pinned("behaviour-encoder", inputs)
    store = store_for(cfg)
    # Always sentence-transformers: that is what gets fine-tuned, whatever encode.backend serves the plain tables.
    base_cfg = cfg.encode.model_copy(update={"backend": "sentence-transformers"})
    base = encoder_id(base_cfg)
    # The pairs are the items with accepted knowledge text, for BOTH encoders: the same pairs, a fair control.
    pairs_recipe = {"interaction_splits": v["interaction_splits"], "item_knowledge_text": v["item_knowledge_text"],
                    **pair_settings(bc)}
    train_recipe = train_settings(bc)
    if bc.mode == "head":  # the head is trained on (and its artefact ends in) normalised vectors or not
        train_recipe["normalize"] = cfg.encode.normalize
    texts_recipe = {"item": {"item_knowledge_text": v["item_knowledge_text"]},
                    "item_raw": {"items": v["items"], "raw_item_columns": list(cfg.encode.raw_item_columns)}}
    enc_versions = {kind: encoder_version({"base": base, "text": t, "pairs": pairs_recipe, "train": train_recipe})
                    for kind, t in texts_recipe.items()}
    tables = {"item": "item_knowledge_emb_bt", "item_raw": "item_raw_emb_bt"}
    specs = {"item": defs.item_knowledge_emb_bt, "item_raw": defs.item_raw_emb_bt}
    code = ("augment.behaviour_encoder", "augment.encode")
    recipes = {kind: {**v, "encoder": enc_versions[kind], "normalize": cfg.encode.normalize} for kind in tables}
    with stage_timer(stats_dir(cfg), "behaviour-encoder") as rec:
        refs = {tables[k]: _reuse(cfg, tables[k], recipes[k], code) for k in tables}
        if all(refs.values()):  # nothing new: no splits read, no model loaded
            rec["encoders"] = enc_versions
            return _versions(refs, rec)
        text = store.read_pandas("item_knowledge_text", v["item_knowledge_text"])
        text = text[text["flag"].isin(ACCEPTED)].set_index("item_id")
        items = store.read_pandas("items", v["items"])
        raw = pd.Series(raw_item_texts(items, cfg.encode.raw_item_columns), index=items["item_id"].to_numpy())
        pairs = mine_pairs(store.read_pandas("interaction_splits", v["interaction_splits"]), bc.window,
                           bc.pair_cap, bc.seed, keep_items=set(text.index) & set(raw.index))
        rec["pairs"] = len(pairs)
        sources = {"item": text["text"], "item_raw": raw}
        root = cfg.workdir_path / "encoders"
        for kind, table in tables.items():
            if refs[table] is not None:
                continue
            texts = sources[kind]
            base_dir = resolve_encoder(cfg.encode.model)
            base_vecs, encode_seconds = None, 0.0
            if bc.mode == "head":  # the frozen encoder reads every text of the table once: training and table
                start = time.perf_counter()
                base_vecs = base_vectors(base_dir, texts.tolist(), bc, cfg.encode.normalize, cfg.encode.batch_size)
                encode_seconds = time.perf_counter() - start
            manifest = finetune(base_dir, texts.reindex(pairs["item_a"]).tolist(),
                                texts.reindex(pairs["item_b"]).tolist(), bc, bc.seed, root / enc_versions[kind],
                                lineage={"base": base, "text": texts_recipe[kind], "pairs": pairs_recipe},
                                normalize=cfg.encode.normalize, base=base_vecs)
            rec[f"{kind}_encoder"] = {**{k: manifest[k] for k in ("version", "pairs", "seconds", "steps", "reused")},
                                      "mode": bc.mode, "base_encode_seconds": round(encode_seconds, 2)}
            enc_cfg = base_cfg.model_copy(update={"model": str(root / enc_versions[kind])})
            name = f"{base}+behaviour:{enc_versions[kind]}"

            def build() -> pd.DataFrame:  # called by _publish within this iteration
                if kind == "item":  # the knowledge text's own times, as item_knowledge_emb has them
                    frame = text[["event_timestamp", "created_timestamp"]].reset_index()
                else:
                    frame = pd.DataFrame({"item_id": texts.index.to_numpy()})
                values = texts.reindex(frame["item_id"]).tolist()
                if base_vecs is not None:  # the head on the base vectors: what the artefact encodes, no 2nd pass
                    vecs = head_encode(enc_cfg.model, np.stack([base_vecs[t] for t in values]), cfg.encode.normalize)
                else:
                    vecs = encode_texts(values, enc_cfg)
                frame["emb"] = list(vecs)
                frame["encoder"] = name
                frame["source_hash"] = [digest(t) for t in values]
                return frame

            dim = len(next(iter(base_vecs.values()))) if base_vecs else dimension(enc_cfg)
            refs[table] = _publish(cfg, specs[kind](dim), build, recipes[kind], code)
        rec["encoders"] = enc_versions
        return _versions(refs, rec)


def run_all(cfg: RunConfig) -> dict[str, Any]:
    """Every augment stage in order in this process, each handed the versions the one before returned (the DAG
    runs the same functions as separate tasks). Returns every table version written."""
    out: dict[str, str] = {}
    out.update(ingest(cfg))
    out.update(split(cfg, out))
    out.update(prompts(cfg, out))
    for kind in ("item", "user"):
        generate(cfg, kind, out)
        out.update(publish_texts(cfg, kind, out))
    for kind in ("item", "user", "item_raw"):
        out.update(encode(cfg, kind, out))
    if cfg.behaviour_encoder.enabled:
        out.update(behaviour_encoder(cfg, out))
    if cfg.generation.structured.enabled:
        out.update(structured_prompts(cfg, out))
        for kind in STRUCTURED:
            generate(cfg, kind, out)
            out.update(publish_structured(cfg, kind, out))
    return out


__all__ = ["ingest", "split", "prompts", "generate", "publish_texts", "import_text", "encode", "behaviour_encoder",
           "structured_prompts", "publish_structured", "run_all", "stage_inputs", "pinned", "store_for", "stats_dir"]
