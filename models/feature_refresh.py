"""Fresh features for the champion: serve today's feature versions with the model the gate kept, when they are
compatible with it, without a retrain.

A daily run writes new profile (and, when the catalogue changes, item) versions, but a champion the gate keeps was
trained with older ones and, until now, served them. A new version may replace a pinned one only when the model
reads it the same way: the **serving contract** of a table version is its name, its Arrow schema (columns, types,
vector width), its table spec, and how its values were made: the recipe's settings (encoder, encode settings,
generation model, prompt template, sampling; never the code digest or the versions of the data it came from),
followed up through the text and prompt tables a vector table was made from. Two versions with the same contract
hold vectors of the same encoder from the same kind of text, so the model's own reduction
(models/vector_reduce.py) and weights apply unchanged. Anything else is refused with the field that differs.

After its gate, a daily retrain writes `<workdir>/registry/<model>/serving_features.json`: the champion's path
and the versions to serve it with (its own pins, with every compatible newer version of this run swapped in).
The server (models/serving/hot_swap.py) watches that file beside champion.json and swaps to the refreshed
snapshot the same way it swaps models: built completely, then one reference assignment.

    python -m models refresh-features --config configs/ml100k.yaml --input user_profile_emb=<version> ...
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from common.files import atomic_write_json
from feature_store import FeatureStore
from models.registry import read_model_manifest, registry_root

SERVING_FEATURES = "serving_features.json"
# upstream tables whose settings belong to a vector table's contract (what text, made how); the data tables'
# recipes name the day's files and change every day by design
UPSTREAM_SUFFIXES = ("_text", "_prompts")
IGNORED = ("code", "table", "format")


def serving_contract(store: FeatureStore, table: str, version: str, depth: int = 3) -> dict:
    """What must match for `version` of `table` to stand in for another version under a trained model."""
    m = store.manifest(table, version)
    recipe = m.get("recipe", {})
    tables = set(store.tables())
    settings, upstream = {}, {}
    for key, value in recipe.items():
        if key in IGNORED:
            continue
        source = _prompt_table(table) if key == "prompts" else key  # a text table names its prompts "prompts"
        if isinstance(value, str) and source in tables:
            if depth > 0 and source.endswith(UPSTREAM_SUFFIXES):
                upstream[source] = serving_contract(store, source, value, depth - 1)
            continue  # another table's version: the data, not how it was made
        if key == "stream" and isinstance(value, Mapping):  # a daily run's interval end: which data, not how
            value = {k: v for k, v in value.items() if k != "end"}
        settings[key] = value
    return {"table": table, "schema": m.get("arrow_schema"), "spec": m.get("spec"), "settings": settings,
            "upstream": upstream}


def _prompt_table(text_table: str) -> str:
    """item_knowledge_text -> item_prompts, user_profile_text -> user_prompts (augment/llm/publish_stage.py)."""
    return f"{text_table.split('_', 1)[0]}_prompts"


def _first_difference(a, b, path: str = "") -> str:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}{key} ({'only the new version has it' if key not in a else 'missing in the new one'})"
            if a[key] != b[key]:
                return _first_difference(a[key], b[key], f"{path}{key}.")
        return path.rstrip(".")
    return f"{path.rstrip('.')} ({a!r} -> {b!r})" if a != b else path.rstrip(".")


def refresh_pins(store: FeatureStore, pins: Mapping[str, str],
                 candidates: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(pins with every compatible candidate swapped in, table -> why a candidate was refused). Only tables the
    model pins are considered; a candidate equal to the pin is not a refresh."""
    out, refused = dict(pins), {}
    for table, version in candidates.items():
        if table not in pins or store.resolve(table, version) == store.resolve(table, pins[table]):
            continue
        old, new = serving_contract(store, table, pins[table]), serving_contract(store, table, version)
        if old == new:
            out[table] = store.resolve(table, version)
        else:
            refused[table] = (f"{table}@{version} is not interchangeable with {table}@{pins[table]} the model was "
                              f"trained on: {_first_difference(old, new)} differs")
    return out, refused


def serving_features_path(work: Path, name: str) -> Path:
    return registry_root(work) / name / SERVING_FEATURES


def refresh_champion(work: Path, name: str, model_path: str, store: FeatureStore,
                     candidates: Mapping[str, str]) -> dict:
    """Write serving_features.json for the champion at `model_path` with this run's compatible versions; returns
    what it wrote (model_path, feature_tables, refreshed: table -> [trained, served], refused)."""
    trained = read_model_manifest(registry_root(work) / name / model_path).get("feature_tables", {})
    served, refused = refresh_pins(store, trained, candidates)
    record = {"model_path": model_path, "feature_tables": served,
              "refreshed": {t: [trained[t], v] for t, v in served.items() if v != trained[t]},
              "refused": refused, "written_at": datetime.now(timezone.utc).isoformat()}
    atomic_write_json(serving_features_path(work, name), record)
    return record


def serving_pins(work: Path, name: str, model_path: str, trained: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """(the versions to serve `model_path` with, the file's raw text or ""): the refreshed set when
    serving_features.json names this model, else what it was trained on."""
    import json

    path = serving_features_path(work, name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return dict(trained), ""
    record = json.loads(text)
    if record.get("model_path") != model_path:
        return dict(trained), ""  # written for another champion: stale
    return {**trained, **record["feature_tables"]}, text
