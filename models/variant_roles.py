"""Like-for-like rules shared by the report and the promotion gate: which variants of a run are LLM-derived, each
one's no-LLM twin, the best no-LLM variant of a backbone, and which models the gate may promote.

A retrain's results carry `llm` (the variant reads an LLM-written table, configs.train_config.LLM_TABLES) and `twin`
(its no-LLM variant with the same treatment, trained beside it: TrainConfig.run_variants). Results written before
those columns existed fall back to the names (`llm*` is LLM-derived, its twin `raw_text<rest>`).

    from models.variant_roles import roles, best_no_llm, gate_eligible
    roles(results)                       # variant -> Role(llm, twin)
    best_no_llm(results, "lightgbm")     # the no-LLM variant with the best mean valid AUC there
    results[gate_eligible(results)]      # the rows the gate may pick from
"""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd

BASE, RAW = "base", "raw_text"


class Role(NamedTuple):
    llm: bool
    twin: str | None


def _role_by_name(variant: str, variants: list[str]) -> Role:
    if not variant.startswith("llm"):
        return Role(False, None)
    twin = RAW + variant[len("llm"):]
    return Role(True, twin if twin in variants else RAW if RAW in variants else None)


def roles(results: pd.DataFrame) -> dict[str, Role]:
    """variant -> Role, in first-seen order."""
    variants = list(dict.fromkeys(results["variant"]))
    if "llm" not in results:
        return {v: _role_by_name(v, variants) for v in variants}
    first = results.drop_duplicates("variant").set_index("variant")
    twins = first["twin"] if "twin" in first else pd.Series(None, index=first.index, dtype=object)
    return {v: Role(bool(first.at[v, "llm"]), twins[v] if isinstance(twins[v], str) else None) for v in variants}


def mean_valid(results: pd.DataFrame, backbone: str) -> pd.Series:
    """Mean valid AUC over seeds of each variant trained on `backbone`."""
    return results[results.backbone == backbone].groupby("variant", sort=False)["valid_auc"].mean()


def best_no_llm(results: pd.DataFrame, backbone: str) -> str | None:
    """The no-LLM variant of `backbone` with the highest mean valid AUC (chosen on valid: choosing the strongest
    control on test would favour it), or None when every variant there reads LLM tables."""
    role = roles(results)
    valid = mean_valid(results, backbone)
    controls = valid[[not role[v].llm for v in valid.index]]
    return None if controls.empty else str(controls.idxmax())


def gate_eligible(results: pd.DataFrame) -> pd.Series:
    """Per result row: may the gate promote it? Every no-LLM model may; an LLM-derived model only when its variant's
    mean valid AUC on that backbone is above its twin's (or, without a twin trained there, above the best no-LLM
    variant's). An LLM model that loses to the same features without the LLM is never served."""
    role = roles(results)
    ok = pd.Series(True, index=results.index)
    for backbone in dict.fromkeys(results["backbone"]):
        valid = mean_valid(results, backbone)
        best = best_no_llm(results, backbone)
        for variant in valid.index:
            r = role[variant]
            if not r.llm:
                continue
            ref = r.twin if r.twin in valid.index else best
            if ref is not None and not valid[variant] > valid[ref]:
                ok[(results.backbone == backbone) & (results.variant == variant)] = False
    return ok
