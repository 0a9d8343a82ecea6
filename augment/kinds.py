"""The kinds of text the pipeline makes or imports, and the tables each one reads and writes.

    from augment.kinds import PROMPT_TABLE, TEXT_TABLE, text_spec
"""
from __future__ import annotations

from typing import Literal

from feature_store import TableSpec
from feature_store import definitions as defs

Kind = Literal["item", "user", "item_tags", "user_interest"]
StructuredKind = Literal["item_tags", "user_interest"]
EncodeKind = Literal["item", "user", "item_raw"]
STRUCTURED = ("item_tags", "user_interest")
PROMPT_TABLE = {"item": "item_prompts", "user": "user_prompts", "item_tags": "item_tags_prompts",
                "user_interest": "user_interest_prompts"}
TEXT_TABLE = {"item": "item_knowledge_text", "user": "user_profile_text", "item_tags": "item_tags_text",
              "user_interest": "user_interest_text"}
EXTERNAL_CHECK = {"item": "items", "user": "user_cutoffs"}  # what external ids are checked against
ID_MAP = defs.ID_MAPS  # original id -> key (common/id_keys.py)
ENCODE_SOURCE = {"item": "item_knowledge_text", "user": "user_profile_text", "item_raw": "items"}
_TEXT_SPEC = {"item": defs.ITEM_KNOWLEDGE_TEXT, "user": defs.USER_PROFILE_TEXT, "item_tags": defs.ITEM_TAGS_TEXT,
              "user_interest": defs.USER_INTEREST_TEXT}


def text_spec(kind: str) -> TableSpec:
    """The *_text table spec of `kind`."""
    return _TEXT_SPEC[kind]
