"""The augment side of the pipeline as plain typed functions, one per stage; the CLI and the DAGs call these.

Every stage takes the exact versions of the tables it reads (`inputs`: table name -> version id) and returns the
versions it wrote; nothing here resolves `latest` (the CLI does, for people, when no --input is given). A table's
version is the hash of its recipe: its input versions, the settings that shape it and a digest of the code that
computes it (common/lineage.py). When that version is already in the store it is reused, not recomputed, so
a re-run of the same inputs with the same settings writes nothing and a version id always names the same bytes.
Wall time goes to <workdir>/stats/<stage>.json.

    python -m augment ingest   --config configs/ml100k.yaml
    python -m augment split    --config configs/ml100k.yaml [--input interactions=<version>]
    python -m augment prompts  --config configs/ml100k.yaml
    python -m augment generate --config configs/ml100k.yaml --kind item [--shard 0]
    python -m augment publish-texts --config configs/ml100k.yaml --kind item
    # bring your own text (augment/text/external_text.py), once by hand or per run via generation.external.<kind>:
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

from typing import Any

from augment.data.ingest_stage import ingest
from augment.data.split_stage import split
from augment.encode.behaviour_stage import behaviour_encoder
from augment.encode.encode_stage import encode
from augment.kinds import encode_kinds, structured_kinds, text_kinds
from augment.llm.generate_stage import generate, pending_prompts, plan_shards
from augment.llm.publish_stage import publish_structured, publish_texts
from augment.publishing import (
    external_text,
    generation_cache,
    kind_off,
    pinned,
    skipped,
    skipped_external,
    stage_inputs,
    stats_dir,
    store_for,
)
from augment.text.import_stage import import_text
from augment.text.prompts_stage import prompts
from augment.text.structured_stage import structured_prompts
from configs import RunConfig


def run_all(cfg: RunConfig) -> dict[str, Any]:
    """Every augment stage in order in this process, each handed the versions the one before returned (the DAG
    runs the same functions as separate tasks). Returns every table version written."""
    out: dict[str, str] = {}
    out.update(ingest(cfg))
    out.update(split(cfg, out))
    out.update(prompts(cfg, out))
    for k in text_kinds():
        if kind_off(cfg, k.name):
            continue
        generate(cfg, k.name, out)
        out.update(publish_texts(cfg, k.name, out))
    for k in encode_kinds():
        if not kind_off(cfg, k.name):
            out.update(encode(cfg, k.name, out))
    if cfg.behaviour_encoder.enabled:
        out.update(behaviour_encoder(cfg, out))
    if cfg.generation.structured.enabled:
        out.update(structured_prompts(cfg, out))
        for k in structured_kinds():
            generate(cfg, k.name, out)
            out.update(publish_structured(cfg, k.name, out))
    return out


__all__ = ["ingest", "split", "prompts", "structured_prompts", "generate", "pending_prompts", "plan_shards",
           "publish_texts", "publish_structured", "import_text", "encode", "behaviour_encoder", "run_all",
           "external_text", "generation_cache", "pinned", "skipped", "skipped_external", "stage_inputs", "stats_dir",
           "store_for", "kind_off"]
