"""Named feature variants of the ablation: which vector groups a model sees, and whether through KAR's adaptor.

    base       ids + side features only
    raw_text   + the encoded raw item text (title/genres): the control an LLM feature has to beat
    llm_item   + LLM item knowledge            (plain DenseFeat)
    llm_user   + LLM user preference           (plain DenseFeat)
    llm        + both                          (plain DenseFeat)
    llm_kar    + both through the hybrid-expert adaptor (deepctr backbones only; LightGBM skips it)

    from models.variants import Variant, ablation, resolve_variants
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

ITEM_KNOWLEDGE, USER_PROFILE, ITEM_RAW = "item_knowledge_emb", "user_profile_emb", "item_raw_emb"


@dataclass(frozen=True)
class Variant:
    groups: tuple[str, ...] = ()  # vector groups fed as plain DenseFeat (LightGBM: PCA components)
    adaptor_groups: tuple[str, ...] = field(default=())  # knowledge types fed through the adaptor, in order

    @property
    def all_groups(self) -> tuple[str, ...]:
        return (*self.groups, *self.adaptor_groups)

    def describe(self) -> str:
        parts = list(self.groups) + [f"kar({'+'.join(self.adaptor_groups)})"] * bool(self.adaptor_groups)
        return ",".join(parts)


def ablation(item: str = ITEM_KNOWLEDGE, user: str = USER_PROFILE, raw: str = ITEM_RAW) -> dict[str, Variant]:
    return {
        "base": Variant(),
        "raw_text": Variant((raw,)),
        "llm_item": Variant((item,)),
        "llm_user": Variant((user,)),
        "llm": Variant((item, user)),
        "llm_kar": Variant(adaptor_groups=(item, user)),
    }


def as_variant(spec: Variant | Sequence[str]) -> Variant:
    """Accept the first version's plain list of groups as a DenseFeat-only variant."""
    return spec if isinstance(spec, Variant) else Variant(tuple(spec))


def resolve_variants(names: Sequence[str], table: Mapping[str, Variant] | None = None) -> dict[str, Variant]:
    table = dict(table or ablation())
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {sorted(table)}")
    return {n: table[n] for n in names}
