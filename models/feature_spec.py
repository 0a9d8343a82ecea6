"""The one feature spec (cfg.train.features): which table and column each model input comes from, and how.

Everyone reads the same entries (configs/train_config.py `FeatureEntry`):

- the dataset builder (models/dataset_builder.py) reads the tables they name and applies their transforms,
- every trainer picks the entries a variant switches on (`model_inputs`) and records them in the saved feature map
  (`common_feature_map`: one format for every backbone),
- serving (models/serving/features.py) rebuilds the same columns per user / item from the pinned tables with the
  same functions (`side_frame`, `apply_transform`), and knows each input's side from the entry's `key`.

Scalar entries (categorical / numeric) of a table WITHOUT an event timestamp are static attributes, read whole
and joined by key; those of a table WITH one go through the point-in-time join like vectors (their transform must
then be row-wise). Adding a feature group is one entry in the config.

    from models.feature_spec import tables_needed, model_inputs
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from configs.train_config import FeatureEntry, TrainConfig, VariantDef
from models.backbone_names import reads_history
from models.taste import is_history_derived

USER_KEY, ITEM_KEY = "user_id", "item_id"
HISTORY = "__history__"  # a model's input_layout name for the sequence block (ids + length): the user's side
ROWWISE = ("none", "age_bucket", "decade", "first")  # transforms that need no whole-table statistic
AGE_BINS = [0, 18, 25, 35, 45, 50, 56, 200]
AGE_LABELS = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]


@dataclass(frozen=True)
class Variant:
    """Which feature groups a model sees: plainly, or (vector groups) through KAR's adaptor."""

    groups: tuple[str, ...] = ()
    adaptor_groups: tuple[str, ...] = ()
    llm: bool = False          # reads an LLM-written table (configs.train_config.LLM_TABLES)
    twin: str | None = None    # its no-LLM twin (LLM-derived variants)

    @property
    def all_groups(self) -> tuple[str, ...]:
        return (*self.groups, *self.adaptor_groups)

    def describe(self) -> str:
        parts = list(self.groups) + [f"kar({'+'.join(self.adaptor_groups)})"] * bool(self.adaptor_groups)
        return ",".join(parts)

    @classmethod
    def from_def(cls, d: VariantDef, llm: bool = False) -> "Variant":
        return cls(tuple(d.groups), tuple(d.adaptor_groups), llm, d.twin if llm else None)


def resolve_variants(cfg: TrainConfig, names: Sequence[str] | None = None) -> dict[str, Variant]:
    """The named variants (default: the run's, `cfg.run_variants()`: `variants` + the twins of its LLM ones)."""
    names = list(cfg.run_variants() if names is None else names)
    unknown = [n for n in names if n not in cfg.variant_defs]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {sorted(cfg.variant_defs)}")
    return {n: Variant.from_def(cfg.variant_defs[n], cfg.llm_derived(n)) for n in names}


def used_entries(features: Sequence[FeatureEntry], variants: Iterable[Variant],
                 sequence: bool = True) -> list[FeatureEntry]:
    """Entries any of `variants` reads: every ungrouped entry + the grouped ones a variant names (spec order)."""
    wanted = {g for v in variants for g in v.all_groups}
    return [f for f in features if (f.feature_group is None or f.feature_group in wanted)
            and (sequence or f.type != "sequence")]


def run_entries(cfg: TrainConfig, backbones: Sequence[str] | None = None) -> list[FeatureEntry]:
    """The entries one retrain run reads: its variants' groups, and the sequence only if a backbone reads it."""
    backbones = cfg.backbones if backbones is None else backbones
    sequence = any(reads_history(b, cfg.sequence_backbones) for b in backbones)
    return used_entries(cfg.features, resolve_variants(cfg).values(), sequence=sequence)


def tables_needed(cfg: TrainConfig, variants: Iterable[Variant] | None = None) -> list[str]:
    """Feature-store tables a run over `variants` (default: cfg.variants) reads: labels + every entry's source."""
    variants = list(resolve_variants(cfg).values() if variants is None else variants)
    names = ["interaction_splits"] + [f.source for f in used_entries(cfg.features, variants)]
    return list(dict.fromkeys(names))


# --- transforms (the same code for training and serving) ---

def age_bucket(age: pd.Series) -> pd.Series:
    return pd.cut(pd.to_numeric(age, errors="coerce").astype("float64"), bins=AGE_BINS, labels=AGE_LABELS,
                  right=False).astype("str")


def _as_category(values: pd.Series) -> pd.Series:
    if values.dtype.kind in "iu":
        return values  # integer ids stay integers (vocabularies sort them numerically)
    return values.astype(object).where(values.notna(), "unknown").astype("str")


def apply_transform(entry: FeatureEntry, values: pd.Series) -> pd.DataFrame:
    """The model column(s) of `entry` from its raw source column: one column named entry.name, or (multi_hot)
    one per value seen, named <name>_<value>."""
    t = entry.transform
    if t == "age_bucket":
        out = {entry.name: age_bucket(values)}
    elif t == "decade":
        year = pd.to_numeric(values, errors="coerce").astype("Float64")
        year = year.fillna(year.median())
        out = {entry.name: (year // 10 * 10).astype("Int64").astype("str")}
    elif t == "first":
        out = {entry.name: [v[0] if v is not None and len(v) else "none" for v in values]}
    elif t == "fill_median":
        num = pd.to_numeric(values, errors="coerce").astype("Float64")
        out = {entry.name: num.fillna(num.median()).astype("float64")}
    elif t == "multi_hot":
        seen = sorted({x for v in values for x in (v if v is not None else [])})
        out = {f"{entry.name}_{x}": [float(v is not None and x in v) for v in values] for x in seen}
    elif entry.type == "categorical":
        out = {entry.name: _as_category(values)}
    else:
        out = {entry.name: pd.to_numeric(values, errors="coerce").astype("float64")}
    return pd.DataFrame(out, index=values.index)


def is_static(store, table: str, version: str) -> bool:
    """A table without an event timestamp holds one timeless row per key: read whole, join by key."""
    return store.spec(table, version).event_timestamp is None


def side_frame(store, versions: Mapping[str, str], entries: Sequence[FeatureEntry], key: str) -> pd.DataFrame:
    """key + the model columns of the static scalar `entries` on `key`'s side, one row per key any of their
    tables holds (outer join; a key missing from one table gets NaN there, i.e. the 'unseen' slot)."""
    out: pd.DataFrame | None = None
    by_table: dict[str, list[FeatureEntry]] = {}
    for e in entries:
        if (e.key == key and e.type in ("categorical", "numeric") and not is_history_derived(e)
                and is_static(store, e.source, versions[e.source])):
            by_table.setdefault(e.source, []).append(e)
    for table, ents in by_table.items():
        cols = list(dict.fromkeys([key, *(e.column for e in ents)]))
        raw = store.read_pandas(table, versions[table], columns=cols).drop_duplicates(key, keep="last")
        raw = raw.reset_index(drop=True)
        # an id entry (user_id from users) is the key column itself: it is already there
        ents = [e for e in ents if not (e.name == key and e.column == key)]
        part = pd.concat([raw[[key]], *(apply_transform(e, raw[e.column]) for e in ents)], axis=1)
        out = part if out is None else out.merge(part, on=key, how="outer")
    return out if out is not None else pd.DataFrame({key: pd.Series([], dtype="int64")})


def pit_scalar_entries(store, versions: Mapping[str, str], entries: Sequence[FeatureEntry]) -> list[FeatureEntry]:
    """Scalar entries read through the point-in-time join (their table has an event timestamp)."""
    out = [e for e in entries if e.type in ("categorical", "numeric") and not is_history_derived(e)
           and not is_static(store, e.source, versions[e.source])]
    bad = [e.name for e in out if e.transform not in ROWWISE]
    if bad:
        raise ValueError(f"feature(s) {bad}: transform needs a whole-table statistic, but the source table has "
                         "an event timestamp (point-in-time joined); use a row-wise transform")
    return out


# --- what one model reads, and the feature map every backbone saves ---

@dataclass
class ModelInputs:
    categorical: list[str]
    numeric: list[str]
    groups: list[str]           # plain vector groups (CtrSplit.vectors keys)
    adaptor_groups: list[str]   # vector groups behind the adaptor


def model_inputs(data, variant: Variant) -> ModelInputs:
    """The columns and vector groups of `data` a model of `variant` reads. Scalar columns of a feature group are
    read only when the variant names the group; a vector is named by its group (itself unless the spec groups it)."""
    wanted = set(variant.all_groups)
    gated = data.column_groups

    def keep(col: str) -> bool:
        return gated.get(col) is None or gated[col] in wanted

    vec_group = {name: gated.get(name, name) for name in data.train.vectors}
    known = set(vec_group.values())
    missing = [g for g in variant.all_groups if g not in known and g not in gated.values()]
    if missing:
        raise ValueError(f"vector group {missing[0]!r} not provided (have {sorted(known)})")

    def vectors(groups: Sequence[str]) -> list[str]:
        return [name for g in groups for name, vg in vec_group.items() if vg == g]

    return ModelInputs([c for c in data.categorical if keep(c)], [c for c in data.numeric if keep(c)],
                       vectors(variant.groups), vectors(variant.adaptor_groups))


def common_feature_map(data, inputs: ModelInputs, backbone: str, history_maxlen: int | None,
                       scaler_json: dict, vocab_json: list[dict]) -> dict:
    """The part of feature_map.json every backbone writes the same way (serving and the registry read only this
    part; each model class reads its own `backbone_state` on top)."""
    train = data.train
    dims = {g: int(np.asarray(train.vectors[g]).shape[1]) for g in [*inputs.groups, *inputs.adaptor_groups]}
    used = set(inputs.categorical) | set(inputs.numeric) | set(dims)
    specs = []
    for entry in data.features:
        cols = [c for c in data.entry_columns.get(entry.name, [entry.name]) if c in used]
        if cols or (entry.type == "sequence" and history_maxlen):
            specs.append({**entry.model_dump(mode="json"), "columns": cols or [entry.name]})
    return {
        "format": 2,
        "backbone": backbone,
        # how requests spell ids: "int" ids are the keys, "string" ids are hashed to them (common/id_keys.py)
        "id_types": {e: getattr(data, "id_types", {}).get(e, "int") for e in ("user", "item")},
        "features": specs,  # the spec entries this model reads (empty for data not built from a spec)
        "categorical": list(inputs.categorical),
        "numeric": list(inputs.numeric),
        "vocabularies": vocab_json,
        "scaler": scaler_json,
        # lists, not dicts: the order is the input-matrix column order
        "vector_groups": [{"name": g, "dim": dims[g]} for g in inputs.groups],
        "adaptor": None,
        "history": {"item": data.item_col, "maxlen": int(history_maxlen)} if history_maxlen else None,
        "taste": getattr(data, "taste", None) if any(is_history_derived(e) for e in _used_entries(data, used))
        else None,
        "label": data.label,
        "user_col": data.user_col,
        "item_col": data.item_col,
    }


def _used_entries(data, used: set[str]) -> list[FeatureEntry]:
    return [e for e in data.features if any(c in used for c in data.entry_columns.get(e.name, [e.name]))]


def dataset_options(train: TrainConfig, feature_map: dict | None = None) -> dict:
    """build_ctr_dataset's history settings: the config's, or those a saved model was trained with."""
    taste = (feature_map or {}).get("taste") or {}
    return {"history_len": train.history_len, "taste_len": int(taste.get("len", train.taste_len)),
            "taste_half_life": float(taste.get("half_life", train.taste_half_life))}


def spec_entries(feature_map: dict) -> list[FeatureEntry]:
    """The FeatureEntry list a saved feature map records (its `columns` are derived, not part of the entry)."""
    return [FeatureEntry.model_validate({k: v for k, v in e.items() if k != "columns"})
            for e in feature_map.get("features", [])]


def input_sides(feature_map: dict) -> dict[str, str]:
    """model column / vector group -> "user_id" | "item_id", from the spec entries in a feature map."""
    out = {}
    for spec in feature_map.get("features", []):
        for col in spec["columns"]:
            out[col] = spec["key"]
    return out
