"""The pipeline's table definitions: one TableSpec per table the augment and models packages exchange.

Both sides import names from here, so a table's schema is declared once. Vector tables are built by a function
because their width depends on the encoder, and the items table by `items_spec` because its text columns
depend on the config (data.item_text_columns).

    python -c "from feature_store.definitions import TABLES; print(list(TABLES))"
"""
from __future__ import annotations

from collections.abc import Sequence

from feature_store.table_spec import Feature, TableSpec

OWNER = "llm-feature-augmentation"

INTERACTIONS = TableSpec(
    name="interactions", entity="interaction", join_keys=("user_id", "item_id"),
    features=(Feature("rating", "float32"), Feature("label", "int8")),
    event_timestamp="timestamp", created_timestamp=None, owner=OWNER,
    description="Canonical interactions; label per data.feedback (rating >= data.label_threshold by default); "
                "rating is NaN for logs without one.")


def items_spec(text_columns: Sequence[str] = ()) -> TableSpec:
    """The item catalogue; `text_columns` (data.item_text_columns) are nullable strings after genres."""
    extra = tuple(Feature(c, "string") for c in text_columns)
    return TableSpec(
        name="items", entity="item", join_keys=("item_id",),
        features=(Feature("title", "string"), Feature("year", "int64"), Feature("genres", "list_string"), *extra),
        event_timestamp=None, created_timestamp=None, owner=OWNER,
        description="Canonical item catalogue" + (f" with item text {list(text_columns)}." if extra else "."))


ITEMS = items_spec()  # no item text columns (the MovieLens-100K and default generic shape)
USERS = TableSpec(
    name="users", entity="user", join_keys=("user_id",),
    features=(Feature("gender", "string"), Feature("age", "int64"), Feature("occupation", "string"),
              Feature("zip_code", "string")),
    event_timestamp=None, created_timestamp=None, owner=OWNER, description="Canonical user attributes.")


def _id_map(entity: str) -> TableSpec:
    return TableSpec(
        name=f"{entity}_id_map", entity=entity, join_keys=(f"{entity}_id",),
        features=(Feature("source_id", "string"), Feature("id_type", "string")),
        event_timestamp=None, created_timestamp=None, owner=OWNER,
        description=f"{entity}_id (the int64 key every table joins on) -> the {entity} id as the source files spell "
                    "it; id_type int keeps the value as the key, string hashes it (common/id_keys.py).")


USER_ID_MAP, ITEM_ID_MAP = _id_map("user"), _id_map("item")
ID_MAPS = {"user": USER_ID_MAP.name, "item": ITEM_ID_MAP.name}  # entity -> its id-map table
INTERACTION_SPLITS = TableSpec(
    name="interaction_splits", entity="interaction", join_keys=("user_id", "item_id"),
    features=(Feature("rating", "float32"), Feature("label", "int8"), Feature("role", "string"),
              Feature("split", "string"), Feature("sampled", "bool")),
    event_timestamp="timestamp", created_timestamp=None, owner=OWNER,
    description="KAR split: role=history feeds prompts, role=sample rows are CTR samples; split by user 8:1:1. "
                "sampled: a negative drawn at split time for a positives-only log (augment/data/negatives.py).")
USER_CUTOFFS = TableSpec(
    name="user_cutoffs", entity="user", join_keys=("user_id",),
    features=(Feature("n_history", "int64"), Feature("n_samples", "int64"), Feature("split", "string")),
    event_timestamp="cutoff", created_timestamp=None, owner=OWNER,
    description="When each user profile is cut: one row per user (the last prompt-history interaction), or in a "
                "daily run one row per (user, cutoff) profile, built from the interactions strictly before it "
                "(n_samples: the interactions new since the previous profile; augment/data/stream_split.py).")

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
                  Feature("finish_reason", "string"),
                  # augment/text/output_validation.py: ok | truncated (both published) | empty | degenerate | refusal |
                  # schema_invalid | prompt_too_long (text "" after `attempts` tries: never knowledge).
                  Feature("flag", "string"), Feature("attempts", "int32"))
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


# --- Behaviour-aligned encoders (augment/encode/behaviour_encoder.py): the same texts, encoded by encode.model fine-tuned on
# training co-occurrence pairs; `encoder` names the artefact version (<workdir>/encoders/<version>).
def item_knowledge_emb_bt(dim: int) -> TableSpec:
    return embedding_spec("item_knowledge_emb_bt", "item", "item_id", dim,
                          "item_knowledge_text encoded by the behaviour-tuned encoder.")


def item_raw_emb_bt(dim: int) -> TableSpec:
    return embedding_spec("item_raw_emb_bt", "item", "item_id", dim,
                          "Control: title + year + genres encoded by its own behaviour-tuned encoder, no LLM.",
                          static=True)


# --- Structured LLM features (augment/text/structured.py): JSON-schema generation -> categorical / multi-hot tables.
ITEM_TAGS_PROMPTS = TableSpec(
    name="item_tags_prompts", entity="item", join_keys=("item_id",), features=_PROMPT_FEATURES,
    event_timestamp=None, created_timestamp=None, owner=OWNER, description="NoteLLM-style item tag prompts.")
USER_INTEREST_PROMPTS = TableSpec(
    name="user_interest_prompts", entity="user", join_keys=("user_id",),
    features=(*_PROMPT_FEATURES, Feature("cold", "bool")), event_timestamp="cutoff", created_timestamp=None,
    owner=OWNER, description="ONCE-style user interest prompts; cold = short history (cold template or skipped).")
ITEM_TAGS_TEXT = TableSpec(
    name="item_tags_text", entity="item", join_keys=("item_id",), features=_TEXT_FEATURES, owner=OWNER,
    description="Raw JSON item tags/category (NoteLLM-style), validated against the schema.",
    tags={"kind": "llm_text"})
USER_INTEREST_TEXT = TableSpec(
    name="user_interest_text", entity="user", join_keys=("user_id",), features=_TEXT_FEATURES, owner=OWNER,
    description="Raw JSON user interest profile (ONCE-style); event_timestamp = the user's history cutoff.",
    tags={"kind": "llm_text"})


def item_tags(n_topics: int) -> TableSpec:
    """Accepted rows only: a missing item gets the defaults (category "unknown", index 0, zero multi-hot)."""
    return TableSpec(
        name="item_tags", entity="item", join_keys=("item_id",),
        features=(Feature("category", "string", default="unknown"), Feature("category_index", "int64", default=0),
                  Feature("tags", "list_string", default=()),
                  Feature("topic_multi_hot", "vector", dim=n_topics, vector_dtype="float32"),
                  Feature("flag", "string")),
        event_timestamp=None, created_timestamp=None, owner=OWNER, tags={"kind": "categorical"},
        description="LLM item category (index 1.. into the topic list, 0 unknown), tags, topic multi-hot.")


def user_interest(n_topics: int) -> TableSpec:
    """Accepted rows only: a missing user gets the defaults (top_topic "unknown", zero weights)."""
    return TableSpec(
        name="user_interest", entity="user", join_keys=("user_id",),
        features=(Feature("top_topic", "string", default="unknown"), Feature("topics", "list_string", default=()),
                  Feature("topic_weights", "vector", dim=n_topics, vector_dtype="float32"),
                  Feature("era", "string", default="unknown"), Feature("cold", "bool", default=False),
                  Feature("flag", "string")),
        owner=OWNER, tags={"kind": "categorical"},
        description="LLM user interest topics (ordered) and rank-weighted topic vector (1, 1/2, 1/3 ...); "
                    "event_timestamp = the user's history cutoff.")


TABLES = {s.name: s for s in (INTERACTIONS, ITEMS, USERS, USER_ID_MAP, ITEM_ID_MAP, INTERACTION_SPLITS, USER_CUTOFFS, ITEM_PROMPTS,
                              USER_PROMPTS, ITEM_KNOWLEDGE_TEXT, USER_PROFILE_TEXT, ITEM_TAGS_PROMPTS,
                              USER_INTEREST_PROMPTS, ITEM_TAGS_TEXT, USER_INTEREST_TEXT)}
