"""The stage seam: how every augment stage pins its inputs, names a table version by its recipe, and publishes or
reuses it, so a re-run of the same inputs with the same settings and code writes nothing.

A table's version is the hash of its recipe: its input versions, the settings that shape it and the digest of the
code that computes it: the stage module (passed as `code`, its `__name__`) and every in-repo module it imports,
directly or not (common/lineage.py). Nothing here resolves `latest`.

    from augment.publishing import pinned, publish_table
    ref = publish_table(cfg, spec, build, recipe, __name__)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from augment.kinds import KINDS, kind_spec
from common.lineage import code_digest
from configs import ExternalText, RunConfig
from feature_store import FeatureStore, TableRef
from feature_store.locations import open_run_store
from feature_store.pins import require_versions
from feature_store.store import FORMAT_VERSION, version_id

log = logging.getLogger(__name__)
STATIC_TIME = pd.Timestamp("1970-01-01", tz="UTC")  # item knowledge comes from catalogue data valid at all times
_ATTRIBUTES = ("items", "users", "interaction_splits", "user_cutoffs")
# Pairs from the splits; the LLM item text and the raw item text (the control) each tune and feed their own encoder.
BEHAVIOUR_INPUTS = ("interaction_splits", "item_knowledge_text", "items")


def external_text(cfg: RunConfig | None, kind: str | None) -> ExternalText | None:
    """The external text file configured for `kind` (generation.external), if any."""
    if cfg is None or kind not in KINDS or KINDS[kind].external_check is None:
        return None
    return getattr(cfg.generation.external, kind, None)


def stage_inputs(stage: str, kind: str | None = None, cfg: RunConfig | None = None) -> tuple[str, ...]:
    """The tables a stage reads: what its `inputs` must pin (and what the CLI resolves for people). `cfg` matters
    for publish-texts only: external text is checked against items/user_cutoffs (the prompt table stays pinned so
    the DAG wiring does not depend on the config)."""
    if stage == "import-text":
        k = kind_spec(kind)
        return (k.external_check, k.id_map)
    if stage == "publish-texts" and external_text(cfg, kind):
        k = KINDS[kind]
        return (k.prompt_table, k.external_check, k.id_map)
    if stage == "generation-variance":
        return (KINDS["item"].prompt_table,)
    if stage in ("generate", "publish-texts", "publish-structured"):
        return (kind_spec(kind).prompt_table,)
    if stage == "encode":
        return (kind_spec(kind).encode_source,)
    if stage == "behaviour-encoder":
        return BEHAVIOUR_INPUTS
    if stage == "encoder-probe":  # + the LLM item text and behaviour-tuned tables when pinned (encoder_probe.OPTIONAL)
        return ("interaction_splits", "items")
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


def full_recipe(table: str, recipe: dict, code: str) -> dict:
    """The whole recipe of a table version: what the stage says shapes it, plus the identity of the code that
    computes it (the stage module `code` and every in-repo module it imports, directly or not: common/lineage.py)."""
    return {"table": table, "code": code_digest(code), "format": FORMAT_VERSION, **recipe}


def reuse_table(cfg: RunConfig, table: str, recipe: dict, code: str) -> TableRef | None:
    """The version `publish_table` would reuse (made latest, as `publish_table` does), found before anything that only the
    table's spec needs (an encoder, for its dimension) is loaded; None when it has to be built."""
    ref = store_for(cfg).reuse(table, version_id(full_recipe(table, recipe, code)))
    if ref is not None:
        log.info("reused %s@%s (%d rows)", ref.name, ref.version, ref.rows)
    return ref


def publish_table(cfg: RunConfig, spec, build: Callable[[], pd.DataFrame], recipe: dict,
             code: str, build_stats: Callable[[], dict] | None = None) -> TableRef:
    """Publish the table `build()` makes under the version of its recipe; if that version exists, reuse it and
    never call `build`. `build_stats()` (asked after `build`) goes into the manifest."""
    recipe = full_recipe(spec.name, recipe, code)
    store = store_for(cfg)
    ref = store.publish(spec, build, recipe=recipe, config=cfg.model_dump(mode="json"), build_stats=build_stats)
    log.info("%s %s@%s (%d rows)", "published" if ref.written else "reused", ref.name, ref.version, ref.rows)
    return ref


def settings_for(section, *added: str) -> dict:
    """A config section for a recipe, minus the `added` settings while they hold their defaults: a setting that
    was introduced later does not change the versions of tables made without it."""
    out = section.model_dump(mode="json")
    for name in added:
        if getattr(section, name) == type(section).model_fields[name].get_default(call_default_factory=True):
            out.pop(name)
    return out


def versions_of(refs: Mapping[str, TableRef], rec: dict) -> dict[str, str]:
    """The versions a stage wrote; its stats record keeps them too (a report shows only its own run's records)."""
    versions = {k: r.version for k, r in refs.items()}
    rec["rows"] = {k: r.rows for k, r in refs.items()}
    rec["versions"] = dict(versions)
    rec["reused"] = sorted(k for k, r in refs.items() if not r.written)
    return versions


def kind_off(cfg: RunConfig, kind: str, force: bool = False) -> str | None:
    """Why a kind's stages do nothing in this config (None: they run): a structured kind while
    generation.structured.enabled is off (unless forced), the user profile text while generation.user_text is off."""
    spec = KINDS.get(kind)
    if spec is None:
        return None
    if spec.structured and not (force or cfg.generation.structured.enabled):
        return "generation.structured.enabled is false"
    if spec.name == "user" and not cfg.generation.user_text:
        return "generation.user_text is false"
    return None


def skipped(reason: str) -> dict:
    return {"skipped": reason}


def skipped_external(cfg: RunConfig, kind: str) -> dict:
    return {"skipped": f"generation.external.{kind} is set: publish-texts imports {external_text(cfg, kind).path}"}
