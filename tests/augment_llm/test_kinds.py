"""The registry of kinds (augment/kinds.py): every table an entry names exists, the CLI, the DAG, the Assets and the
stage inputs are derived from it, and a new entry is all it takes for a new kind to show up in them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from augment import kinds
from augment.kinds import KINDS, KindSpec

REPO = Path(__file__).resolve().parents[2]
# An item-side free-text feature, declared as the module docstring of augment/kinds.py says.
FAKE = KindSpec("item_summary", "item", prompt_table="item_summary_prompts", template="item_knowledge_v1",
                text_table="item_summary_text", max_tokens=("sampling", "max_tokens_item"),
                encode_source="item_summary_text", emb_table="item_summary_emb")


@pytest.mark.parametrize("name", list(KINDS))
def test_every_table_a_kind_names_exists(name):
    from augment.text.prompts import load_template
    from configs import ExternalTexts, GenerationConfig, PromptConfig
    from feature_store import definitions as defs

    k = KINDS[name]
    assert k.name == name and k.entity in ("item", "user") and k.key == f"{k.entity}_id"
    assert defs.ID_MAPS[k.entity] == k.id_map
    specs = []
    if k.generated:
        specs += [k.prompt_spec(), k.text_spec()]
        assert [s.name for s in specs] == [k.prompt_table, k.text_table]
        assert k.prompt_spec().event_timestamp == (None if k.time == "static" else "cutoff")
        assert isinstance(k.max_tokens_of(GenerationConfig()), int)
        assert load_template(k.template_of(PromptConfig())).name
    if k.structured:
        specs.append(k.feature_spec(3))
        assert specs[-1].name == k.feature_table == name
    if k.encoded:
        assert k.encode_source in defs.TABLES
        specs.append(k.emb_spec(8))
        assert specs[-1].name == k.emb_table
        assert (specs[-1].event_timestamp is None) == (not k.generated)  # the raw control is static
    if k.external_check:
        assert k.external_check in defs.TABLES and name in ExternalTexts.model_fields
        assert defs.TABLES[k.external_check].join_keys == (k.key,)
    assert specs and all(s.entity == k.entity and s.join_keys == (k.key,) for s in specs)


def test_the_kind_types_are_the_registry():
    assert list(get_args(kinds.Kind)) == kinds.names(kinds.generated_kinds())
    assert list(get_args(kinds.StructuredKind)) == kinds.names(kinds.structured_kinds())
    assert list(get_args(kinds.EncodeKind)) == kinds.names(kinds.encode_kinds())
    from augment.text.structured import SCHEMAS

    assert set(SCHEMAS) == set(kinds.names(kinds.structured_kinds()))


def test_the_registry_says_what_the_parallel_tables_said():
    """The tables and budgets every kind had before the registry (versions must not move)."""
    from configs import GenerationConfig

    g = GenerationConfig()
    got = {k.name: (k.prompt_table, k.text_table, k.external_check, k.encode_source, k.emb_table, k.time)
           for k in KINDS.values()}
    assert got == {
        "item": ("item_prompts", "item_knowledge_text", "items", "item_knowledge_text", "item_knowledge_emb", "static"),
        "user": ("user_prompts", "user_profile_text", "user_cutoffs", "user_profile_text", "user_profile_emb",
                 "cutoff"),
        "item_tags": ("item_tags_prompts", "item_tags_text", None, None, None, "static"),
        "user_interest": ("user_interest_prompts", "user_interest_text", None, None, None, "cutoff"),
        "item_raw": (None, None, None, "items", "item_raw_emb", "static")}
    assert {k.name: k.max_tokens_of(g) for k in kinds.generated_kinds()} == {
        "item": g.sampling.max_tokens_item, "user": g.sampling.max_tokens_user,
        "item_tags": g.structured.max_tokens_item, "user_interest": g.structured.max_tokens_user}


def _kind_choices(parser, cmd: str) -> list[str] | None:
    sub = next(a for a in parser._actions if a.dest == "cmd").choices[cmd]
    return next((list(a.choices) for a in sub._actions if a.dest == "kind"), None)


def test_cli_kind_choices_come_from_the_registry():
    from augment.__main__ import build_parser

    parser = build_parser()
    assert _kind_choices(parser, "generate") == ["item", "user", "item_tags", "user_interest"]
    assert _kind_choices(parser, "publish-texts") == ["item", "user"]
    assert _kind_choices(parser, "import-text") == ["item", "user"]
    assert _kind_choices(parser, "publish-structured") == ["item_tags", "user_interest"]
    assert _kind_choices(parser, "encode") == ["item", "user", "item_raw"]
    assert _kind_choices(parser, "prompts") is None


def test_feature_assets_are_the_embedding_tables_of_the_registry():
    from ops.airflow_wiring import FEATURE_ASSETS

    assert [a.uri for a in FEATURE_ASSETS] == [f"llmfa://feature_store/{k.emb_table}" for k in kinds.encode_kinds()]


def test_one_entry_adds_a_kind_to_the_cli_and_the_stage_inputs(monkeypatch):
    from augment.__main__ import build_parser
    from augment.publishing import stage_inputs

    monkeypatch.setitem(KINDS, FAKE.name, FAKE)
    parser = build_parser()
    for cmd in ("generate", "publish-texts", "encode"):
        assert FAKE.name in _kind_choices(parser, cmd)
    assert FAKE.name not in _kind_choices(parser, "publish-structured")
    assert FAKE.name not in _kind_choices(parser, "import-text")  # no external_check: no import-text
    assert parser.parse_args(["generate", "--config", "c.yaml", "--kind", FAKE.name]).kind == FAKE.name
    assert stage_inputs("generate", FAKE.name) == ("item_summary_prompts",)
    assert stage_inputs("publish-texts", FAKE.name) == ("item_summary_prompts",)
    assert stage_inputs("encode", FAKE.name) == ("item_summary_text",)
    assert FAKE.name in kinds.names(kinds.text_kinds())


_DAG_WITH_A_FAKE_KIND = """
import json, sys
from augment import kinds
from augment.kinds import KindSpec
fake = KindSpec("item_summary", "item", prompt_table="item_summary_prompts", template="item_knowledge_v1",
                text_table="item_summary_text", max_tokens=("sampling", "max_tokens_item"),
                encode_source="item_summary_text", emb_table="item_summary_emb")
if sys.argv[1] == "fake":
    kinds.KINDS[fake.name] = fake
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[2])
dag = bag.dags["augment_features"]
tasks = {t.task_id: t for t in dag.tasks}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "tasks": sorted(tasks),
                  "assets": sorted(a.uri for a in tasks["publish_features"].outlets),
                  "publish_upstream": sorted(tasks["publish_features"].upstream_task_ids),
                  "structured_upstream": sorted(tasks["build_structured_prompts"].upstream_task_ids)}))
"""


def _dag(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _DAG_WITH_A_FAKE_KIND, mode, str(REPO / "dags" / "augment_features.py")],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["errors"] == {}
    return got


@pytest.mark.timeout(300)
def test_the_dag_loops_over_the_registry_and_one_entry_adds_a_kinds_tasks():
    real = _dag("real")
    per_kind = {f"plan_{k}_shards" for k in kinds.names(kinds.generated_kinds())}
    per_kind |= {f"generate_{k}" for k in kinds.names(kinds.generated_kinds())}
    per_kind |= {f"publish_{k}_text" for k in kinds.names(kinds.text_kinds())}
    per_kind |= {f"publish_{k}" for k in kinds.names(kinds.structured_kinds())}
    per_kind |= {f"encode_{k}" for k in kinds.names(kinds.encode_kinds())}
    fixed = {"freeze_config", "ingest", "split", "build_prompts", "build_structured_prompts", "behaviour_encoder",
             "publish_features"}
    assert set(real["tasks"]) == per_kind | fixed
    assert real["assets"] == sorted(f"llmfa://feature_store/{k.emb_table}" for k in kinds.encode_kinds())

    fake = _dag("fake")
    added = {"plan_item_summary_shards", "generate_item_summary", "publish_item_summary_text", "encode_item_summary"}
    assert set(fake["tasks"]) == set(real["tasks"]) | added
    assert fake["assets"] == sorted([*real["assets"], "llmfa://feature_store/item_summary_emb"])
    assert {"publish_item_summary_text", "encode_item_summary"} <= set(fake["publish_upstream"])
    assert "publish_item_summary_text" in fake["structured_upstream"]


def test_the_registry_is_light_at_import():
    """DAG files import it at parse time: stdlib only (no pyarrow, pandas, pydantic)."""
    code = ("import json, sys; import augment.kinds; "
            "print(json.dumps([m for m in ('pyarrow', 'pandas', 'numpy', 'pydantic', 'feature_store', 'configs') "
            "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
