"""The `data:` and `split:` sections of a run config: where the interactions, items and users come from, how
their columns map, the feedback type, and how users and interactions are split.

    from configs.data_config import DataConfig
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from configs.strict import Strict as _Strict

ITEM_BASE_COLUMNS = ("item_id", "title", "year", "genres")  # what every items table has


RAW_ITEM_DEFAULT = ["title", "year", "genres"]


class ColumnMap(_Strict):
    """One source file of a generic dataset and how its columns map onto our canonical names."""

    path: str
    format: Literal["csv", "parquet", "auto"] = "auto"
    sep: str = ","
    columns: dict[str, str] = Field(default_factory=dict, description="canonical name -> source column name")


class GenericSource(_Strict):
    interactions: ColumnMap
    items: ColumnMap
    users: ColumnMap | None = None
    timestamp_unit: Literal["s", "ms"] = "s"
    genres_sep: str = "|"


class IdTypes(_Strict):
    """Per entity: "auto" infers int only when every id in every file is a canonical integer (common/id_keys.py)."""

    user: Literal["auto", "int", "string"] = "auto"
    item: Literal["auto", "int", "string"] = "auto"


class DataConfig(_Strict):
    source: Literal["movielens100k", "generic"] = "movielens100k"
    recbole_version: str = "1.2.1"
    recbole_sha256: str = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
    generic: GenericSource | None = None
    label_threshold: float = 4.0
    id_types: IdTypes = IdTypes()
    # rating: label = rating >= label_threshold. label: a 0/1 column. event: label = event in positive_events.
    # positive_only: every row is a positive; negatives are sampled at split time (split.negatives).
    feedback: Literal["rating", "label", "event", "positive_only"] = "rating"
    positive_events: list[str] = Field(default_factory=list, description="feedback=event: the events that are positives")
    rating_range: tuple[float, float] | None = Field(None, description="ratings outside [lo, hi] are an error")
    duplicates: Literal["drop", "error"] = Field("drop", description="exact duplicate interaction rows")
    sample_users: int | None = Field(None, ge=10, description="keep a seeded random subset of users (quick look)")
    sample_seed: int = 0
    # Extra item text read from the items file (canonical names, mapped through data.generic.items.columns like the
    # others), carried in the items table after genres: usable as $name in item prompt templates and in
    # encode.raw_item_columns.
    item_text_columns: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _generic_needs_paths(self) -> "DataConfig":
        if self.source == "generic" and self.generic is None:
            raise ValueError("data.source=generic needs a data.generic section")
        if self.feedback == "event" and not self.positive_events:
            raise ValueError("data.feedback=event needs data.positive_events (the event names that are positives)")
        if self.feedback != "event" and self.positive_events:
            raise ValueError("data.positive_events is only used with data.feedback=event")
        if self.rating_range is not None and not self.rating_range[0] <= self.rating_range[1]:
            raise ValueError(f"data.rating_range {list(self.rating_range)}: low end above high end")
        if self.item_text_columns and self.source != "generic":
            raise ValueError("data.item_text_columns needs data.source=generic (MovieLens-100K has no item text)")
        for name in self.item_text_columns:
            # A template placeholder and a Parquet column name: an identifier, and not a name the items table has.
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in ITEM_BASE_COLUMNS:
                raise ValueError(f"data.item_text_columns: {name!r} must be a lower-case identifier other than "
                                 f"{list(ITEM_BASE_COLUMNS)}")
        if len(set(self.item_text_columns)) != len(self.item_text_columns):
            raise ValueError(f"data.item_text_columns has a duplicate: {self.item_text_columns}")
        return self


class NegativeSampling(_Strict):
    """Negatives for positives-only logs (data.feedback=positive_only), drawn at split time (augment/data/negatives.py)."""

    per_positive: int = Field(4, ge=1, description="sampled negatives per positive CTR sample")
    popularity_alpha: float = Field(0.75, ge=0.0, description="P(item) ~ train count**alpha; 0 = uniform")
    seed: int = 0


class SplitConfig(_Strict):
    history_max: int = Field(30, ge=1)
    seed: int = 42
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    negatives: NegativeSampling = NegativeSampling()
