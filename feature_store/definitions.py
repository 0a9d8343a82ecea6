"""The pipeline's table definitions: one TableSpec per table the augment and models packages exchange.

Both sides import names from here, so a table's schema is declared once. Vector tables are built by a function
because their width depends on the encoder.

    python -c "from feature_store.definitions import TABLES; print(list(TABLES))"
"""
from __future__ import annotations

from .table_spec import Feature, TableSpec

OWNER = "llm-feature-augmentation"

INTERACTIONS = TableSpec(
    name="interactions", entity="interaction", join_keys=("user_id", "item_id"),
    features=(Feature("rating", "float32"), Feature("label", "int8")),
    event_timestamp="timestamp", created_timestamp=None, owner=OWNER,
    description="Canonical interactions; label = rating >= data.label_threshold.")
ITEMS = TableSpec(
    name="items", entity="item", join_keys=("item_id",),
    features=(Feature("title", "string"), Feature("year", "int64"), Feature("genres", "list_string")),
    event_timestamp=None, created_timestamp=None, owner=OWNER, description="Canonical item catalogue.")
USERS = TableSpec(
    name="users", entity="user", join_keys=("user_id",),
    features=(Feature("gender", "string"), Feature("age", "int64"), Feature("occupation", "string"),
              Feature("zip_code", "string")),
    event_timestamp=None, created_timestamp=None, owner=OWNER, description="Canonical user attributes.")
INTERACTION_SPLITS = TableSpec(
    name="interaction_splits", entity="interaction", join_keys=("user_id", "item_id"),
    features=(Feature("rating", "float32"), Feature("label", "int8"), Feature("role", "string"),
              Feature("split", "string")),
    event_timestamp="timestamp", created_timestamp=None, owner=OWNER,
    description="KAR split: role=history feeds prompts, role=sample rows are CTR samples; split by user 8:1:1.")
USER_CUTOFFS = TableSpec(
    name="user_cutoffs", entity="user", join_keys=("user_id",),
    features=(Feature("cutoff", "timestamp"), Feature("n_history", "int64"), Feature("n_samples", "int64"),
              Feature("split", "string")),
    event_timestamp=None, created_timestamp=None, owner=OWNER,
    description="Per-user time of the last prompt-history interaction.")

_PROMPT_FEATURES = (Feature("messages", "string"), Feature("template_name", "string"),
                    Feature("template_version", "string"), Feature("prompt_hash", "string"))
ITEM_PROMPTS = TableSpec(
    name="item_prompts", entity="item", join_keys=("item_id",), features=_PROMPT_FEATURES,
    event_timestamp=None, created_timestamp=None, owner=OWNER, description="KAR item-factual prompts.")
USER_PROMPTS = TableSpec(
    name="user_prompts", entity="user", join_keys=("user_id",), features=_PROMPT_FEATURES,
    event_timestamp="cutoff", created_timestamp=None, owner=OWNER,
    description="KAR user preference-reasoning prompts; each sees only history up to `cutoff`.")

_TEXT_FEATURES = (Feature("text", "string"), Feature("model", "string"), Feature("template_name", "string"),
                  Feature("template_version", "string"), Feature("prompt_hash", "string"),
                  Feature("prompt_tokens", "int32"), Feature("output_tokens", "int32"),
                  Feature("finish_reason", "string"))
ITEM_KNOWLEDGE_TEXT = TableSpec(
    name="item_knowledge_text", entity="item", join_keys=("item_id",), features=_TEXT_FEATURES, owner=OWNER,
    description="LLM item factual knowledge (KAR).", tags={"kind": "llm_text"})
USER_PROFILE_TEXT = TableSpec(
    name="user_profile_text", entity="user", join_keys=("user_id",), features=_TEXT_FEATURES, owner=OWNER,
    description="LLM user preference reasoning (KAR); event_timestamp = the user's history cutoff.",
    tags={"kind": "llm_text"})


def embedding_spec(name: str, entity: str, key: str, dim: int, description: str, static: bool = False) -> TableSpec:
    return TableSpec(
        name=name, entity=entity, join_keys=(key,),
        features=(Feature("emb", "vector", dim=dim, vector_dtype="float16"), Feature("encoder", "string"),
                  Feature("source_hash", "string")),
        event_timestamp=None if static else "event_timestamp", created_timestamp=None if static else "created_timestamp",
        owner=OWNER, description=description, tags={"kind": "embedding"})


def item_knowledge_emb(dim: int) -> TableSpec:
    return embedding_spec("item_knowledge_emb", "item", "item_id", dim, "Encoded item_knowledge_text.")


def user_profile_emb(dim: int) -> TableSpec:
    return embedding_spec("user_profile_emb", "user", "user_id", dim, "Encoded user_profile_text.")


def item_raw_emb(dim: int) -> TableSpec:
    return embedding_spec("item_raw_emb", "item", "item_id", dim,
                          "Control: encoded title + year + genres, no LLM.", static=True)


TABLES = {s.name: s for s in (INTERACTIONS, ITEMS, USERS, INTERACTION_SPLITS, USER_CUTOFFS, ITEM_PROMPTS,
                              USER_PROMPTS, ITEM_KNOWLEDGE_TEXT, USER_PROFILE_TEXT)}
