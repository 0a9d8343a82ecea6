"""The registry of kinds: every text the pipeline generates or imports, and every vector it encodes, declared once.

A *kind* (item, user, item_tags, user_interest, item_raw) is one entry of `KINDS`: its entity and key column,
its prompt table and template, its text table, its token budget, what external text is checked against, its
embedding table, and whether its time is static or the user's history cutoff. The CLI's --kind choices, the DAG's
task loops, the feature Assets, `augment.stages.run_all`, the prompt stages and every stage's input tables
iterate this registry instead of naming kinds.

Light at import (stdlib only): the DAG files read it at parse time. Table specs are looked up by name in
feature_store/definitions.py when a stage asks for one (`KindSpec.text_spec()`, `.emb_spec(dim)`, ...).

    from augment.kinds import KINDS, generated_kinds, encode_kinds
    KINDS["user"].text_table            # 'user_profile_text'
    [k.name for k in encode_kinds()]    # ['item', 'user', 'item_raw']

Adding an LLM feature
---------------------
A free-text feature of items or users (like the KAR `item` and `user` kinds) is one `KindSpec` entry below:

    KindSpec("item_summary", "item", prompt_table="item_summary_prompts", template="item_summary_v1",
             text_table="item_summary_text", max_tokens=("sampling", "max_tokens_item"),
             emb_table="item_summary_emb")

The entry makes it a --kind of `generate` / `publish-texts` (and `encode` when it has `emb_table`), gives it
plan/generate/publish (and encode) tasks in augment_features, an Asset for its embedding table, a place in
`run_all`, and its prompt table in the `prompts` stage (built like the other prompts of its entity). Besides the
entry you need:

- a prompt template, augment/templates/<name>.txt (`template` is a PromptConfig field naming one, or else the
  template's own name);
- table specs in feature_store/definitions.py: the prompt and text tables in `TABLES` (a copy of
  ITEM_PROMPTS / ITEM_KNOWLEDGE_TEXT under the new names), and for an encoded kind a function named like its
  `emb_table` that takes the vector width (as `item_knowledge_emb(dim)`);
- to train on it, its columns in configs/train_config.py (models never import augment).

tests/augment_llm/test_kinds.py checks that every table an entry names exists. A structured (JSON-schema) kind
also needs a schema and a feature builder in augment/text/structured.py and a feature-table function named like
the kind in feature_store/definitions.py; `external_check` lets import-text / generation.external supply the text
from a file (the item and user kinds only: ExternalTexts has a field per kind).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Entity = Literal["item", "user"]
# The kinds as types (the stage functions' signatures); tests/augment_llm/test_kinds.py checks them against KINDS.
Kind = Literal["item", "user", "item_tags", "user_interest"]
StructuredKind = Literal["item_tags", "user_interest"]
EncodeKind = Literal["item", "user", "item_raw"]


@dataclass(frozen=True)
class KindSpec:
    """One kind. Table fields are table names in feature_store/definitions.py; None: the kind has no such step."""

    name: str
    entity: Entity
    # LLM generation: the prompt table it reads, the PromptConfig field naming its template (or a template name),
    # the *_text table it publishes, and its token budget as (GenerationConfig section, field).
    prompt_table: str | None = None
    template: str | None = None
    text_table: str | None = None
    max_tokens: tuple[str, str] | None = None
    # JSON-schema generation (augment/text/structured.py) -> a feature table named after the kind.
    structured: bool = False
    external_check: str | None = None  # text may come from a file, checked against this table's keys (import-text)
    # Encoding: the table it encodes (a text table, or the raw catalogue) and the vector table it writes, whose spec
    # is the function of that name in feature_store/definitions.py (it takes the encoder's width).
    encode_source: str | None = None
    emb_table: str | None = None
    time: Literal["static", "cutoff"] = "static"  # event time: catalogue-static, or the user's history cutoff

    @property
    def key(self) -> str:
        """The join key of its tables (item_id / user_id)."""
        return f"{self.entity}_id"

    @property
    def id_map(self) -> str:
        """The id-map table of its entity (original id -> key, common/id_keys.py)."""
        return f"{self.entity}_id_map"

    @property
    def generated(self) -> bool:
        return self.prompt_table is not None

    @property
    def encoded(self) -> bool:
        return self.emb_table is not None

    @property
    def feature_table(self) -> str | None:
        """A structured kind's categorical/multi-hot table (its spec: the function of this name in definitions)."""
        return self.name if self.structured else None

    def max_tokens_of(self, generation_cfg: Any) -> int:
        """Its token budget in a GenerationConfig."""
        section, field = self.max_tokens
        return getattr(getattr(generation_cfg, section), field)

    def template_of(self, prompt_cfg: Any) -> str:
        """Its template name: the PromptConfig field `template`, or `template` itself when there is no such field."""
        return getattr(prompt_cfg, self.template, self.template)

    def prompt_spec(self):
        from feature_store.definitions import TABLES

        return TABLES[self.prompt_table]

    def text_spec(self):
        from feature_store.definitions import TABLES

        return TABLES[self.text_table]

    def emb_spec(self, dim: int):
        from feature_store import definitions

        return getattr(definitions, self.emb_table)(dim)

    def feature_spec(self, n_topics: int):
        from feature_store import definitions

        return getattr(definitions, self.feature_table)(n_topics)


_ENTRIES = (
    # KAR free text: item factual knowledge (static) and user preference reasoning (as of each history cutoff).
    KindSpec("item", "item", prompt_table="item_prompts", template="item_template", text_table="item_knowledge_text",
             max_tokens=("sampling", "max_tokens_item"), external_check="items",
             encode_source="item_knowledge_text", emb_table="item_knowledge_emb"),
    KindSpec("user", "user", prompt_table="user_prompts", template="user_template", text_table="user_profile_text",
             max_tokens=("sampling", "max_tokens_user"), external_check="user_cutoffs",
             encode_source="user_profile_text", emb_table="user_profile_emb", time="cutoff"),
    # Structured (generation.structured.enabled): NoteLLM-style item tags, ONCE-style user interests.
    KindSpec("item_tags", "item", prompt_table="item_tags_prompts", template="item_tags_template",
             text_table="item_tags_text", max_tokens=("structured", "max_tokens_item"), structured=True),
    KindSpec("user_interest", "user", prompt_table="user_interest_prompts", template="user_interest_template",
             text_table="user_interest_text", max_tokens=("structured", "max_tokens_user"), structured=True,
             time="cutoff"),
    # The no-LLM control: title + year + genres (encode.raw_item_columns) straight from the catalogue.
    KindSpec("item_raw", "item", encode_source="items", emb_table="item_raw_emb"),
)
KINDS: dict[str, KindSpec] = {k.name: k for k in _ENTRIES}


def generated_kinds() -> list[KindSpec]:
    """Kinds the LLM writes (generate's --kind), free text first."""
    return [k for k in KINDS.values() if k.generated]


def text_kinds() -> list[KindSpec]:
    """Free-text LLM kinds: the prompts stage, publish-texts, and the first generation tasks."""
    return [k for k in KINDS.values() if k.generated and not k.structured]


def structured_kinds() -> list[KindSpec]:
    """JSON-schema kinds: structured-prompts, publish-structured (off unless generation.structured.enabled)."""
    return [k for k in KINDS.values() if k.generated and k.structured]


def importable_kinds() -> list[KindSpec]:
    """Kinds whose text can come from a file (import-text, generation.external.<kind>)."""
    return [k for k in KINDS.values() if k.external_check is not None]


def encode_kinds() -> list[KindSpec]:
    """Kinds encode turns into a vector table: the feature tables augment_features announces as Assets."""
    return [k for k in KINDS.values() if k.encoded]


def names(kinds: list[KindSpec]) -> list[str]:
    return [k.name for k in kinds]


def kind_spec(name: str) -> KindSpec:
    """The entry of `name`; an unknown kind is a ValueError naming the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown kind {name!r}: one of {list(KINDS)}") from None


def text_spec(name: str):
    """The *_text table spec of kind `name`."""
    return kind_spec(name).text_spec()
