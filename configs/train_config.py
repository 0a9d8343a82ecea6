"""The `train:` section of a run config: what `python -m models retrain` trains and how (read by models/ only).

- `features` (+ `add_features`, appended to it): the ONE feature spec (models/feature_spec.py). Each entry is a categorical / numeric / sequence /
  vector feature with its source table and key; the dataset builder, every trainer, the saved feature map and the
  scorer read it. Entries without a `group` feed every model; entries with a `group` only the variants naming it.
- `variant_defs`: named variants = which feature groups a model sees (plain, or behind KAR's adaptor);
  `variants` picks the ones a run trains.
- `lightgbm` / `deepctr`: the backbones' hyper-parameters (unknown keys rejected like everywhere else).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from configs.strict import Strict as _Strict

FeatureType = Literal["categorical", "numeric", "sequence", "vector"]
# none: the column as is (categorical strings: missing -> "unknown"; numeric: missing stays NaN)
# age_bucket: numeric age -> "<18", "18-24", ... (categorical); decade: year -> "1990" (categorical)
# first: first element of a list column (categorical; empty -> "none"); fill_median: numeric, NaN -> table median
# multi_hot: list column -> one numeric 0/1 column per value seen in the table, named <name>_<value>
# history_mean / history_recency (vector, key user_id, source an item-keyed vector table): the user's taste, the
#   (recency-weighted) mean of the vectors of the items liked before each label (models/taste.py)
# history_cosine (numeric, key user_id, same kind of source): cosine of that taste and the row's item vector
Transform = Literal["none", "age_bucket", "decade", "first", "fill_median", "multi_hot", "history_mean",
                    "history_recency", "history_cosine"]


MODEL_NAME = "ctr"  # the registry name of the served model unless train.model_name says otherwise

class FeatureEntry(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="model column / vector group name")
    type: FeatureType
    source: str = Field(description="feature-store table it is read from")
    key: Literal["user_id", "item_id"] = Field(description="the entity the value belongs to")
    column: str = Field(description="column of the source table")
    transform: Transform = "none"
    group: str | None = Field(None, description="None: every model; else only variants naming this group")

    @model_validator(mode="after")
    def _consistent(self) -> "FeatureEntry":
        allowed = {"categorical": {"none", "age_bucket", "decade", "first"},
                   "numeric": {"none", "fill_median", "multi_hot", "history_cosine"}, "sequence": {"none"},
                   "vector": {"none", "history_mean", "history_recency"}}
        if self.transform not in allowed[self.type]:
            raise ValueError(f"feature {self.name!r}: transform {self.transform!r} does not apply to a {self.type} "
                             f"feature (allowed: {sorted(allowed[self.type])})")
        if self.transform.startswith("history_") and self.key != "user_id":
            raise ValueError(f"feature {self.name!r}: transform {self.transform!r} is a user's taste over the items "
                             "they liked: key must be user_id (the source is the item vector table)")
        return self

    @property
    def feature_group(self) -> str | None:
        """The group a variant names to switch this entry on; a vector entry is its own group unless told."""
        return self.group or (self.name if self.type == "vector" else None)


def _f(name: str, type_: str, source: str, key: str, column: str, transform: str = "none",
       group: str | None = None) -> FeatureEntry:
    return FeatureEntry(name=name, type=type_, source=source, key=key, column=column, transform=transform,
                        group=group)


# Today's feature set (what every model read before the spec existed) + the structured tables as a group.
DEFAULT_FEATURES: tuple[FeatureEntry, ...] = (
    _f("user_id", "categorical", "users", "user_id", "user_id"),
    _f("item_id", "categorical", "items", "item_id", "item_id"),
    _f("gender", "categorical", "users", "user_id", "gender"),
    _f("age_bucket", "categorical", "users", "user_id", "age", "age_bucket"),
    _f("occupation", "categorical", "users", "user_id", "occupation"),
    _f("first_genre", "categorical", "items", "item_id", "genres", "first"),
    _f("decade", "categorical", "items", "item_id", "year", "decade"),
    _f("year", "numeric", "items", "item_id", "year", "fill_median"),
    _f("genre", "numeric", "items", "item_id", "genres", "multi_hot"),
    _f("history", "sequence", "interaction_splits", "user_id", "item_id"),
    _f("item_raw_emb", "vector", "item_raw_emb", "item_id", "emb"),
    _f("item_knowledge_emb", "vector", "item_knowledge_emb", "item_id", "emb"),
    _f("user_profile_emb", "vector", "user_profile_emb", "user_id", "emb"),
    # structured generation (generation.structured.enabled): NoteLLM-style item tags, ONCE-style user interests
    _f("item_category", "categorical", "item_tags", "item_id", "category", group="structured"),
    _f("item_topics", "vector", "item_tags", "item_id", "topic_multi_hot", group="structured"),
    _f("user_top_topic", "categorical", "user_interest", "user_id", "top_topic", group="structured"),
    _f("user_topics", "vector", "user_interest", "user_id", "topic_weights", group="structured"),
    # user taste without an LLM (models/taste.py): mean item vector of the user's liked history before each label,
    # and its cosine with the candidate item, for the knowledge vectors and (same treatment) the raw-text control
    _f("user_taste_knowledge", "vector", "item_knowledge_emb", "user_id", "emb", "history_mean"),
    _f("match_knowledge", "numeric", "item_knowledge_emb", "user_id", "emb", "history_cosine",
       "match_knowledge"),
    _f("user_taste_raw", "vector", "item_raw_emb", "user_id", "emb", "history_mean"),
    _f("match_raw", "numeric", "item_raw_emb", "user_id", "emb", "history_cosine", "match_raw"),
    # short-term taste beside the long-term mean: recency-weighted (an item's weight halves every
    # train.taste_half_life newer liked items), for both tables alike
    _f("user_recent_knowledge", "vector", "item_knowledge_emb", "user_id", "emb", "history_recency"),
    _f("user_recent_raw", "vector", "item_raw_emb", "user_id", "emb", "history_recency"),
)


# Tables whose content an LLM wrote (generated or imported *_text via its vectors, structured outputs). A variant
# reading any of them is LLM-derived: the report judges it against its no-LLM twin and the best no-LLM variant,
# and the gate never promotes it over a twin that does better on valid. tests/augment_llm/test_kinds.py checks this
# set against augment.kinds.KINDS (configs sit below augment and cannot import it).
LLM_TABLES = frozenset({"item_knowledge_emb", "user_profile_emb", "item_tags", "user_interest",
                        "item_knowledge_emb_bt"})


class VectorReduce(_Strict):
    """How each text / taste vector group is reduced before a model reads it (models/vector_reduce.py)."""

    method: Literal["pca", "whiten", "none"] = Field("pca", description="pca: top `dim` principal components; "
                                                     "whiten: the same, each scaled to unit variance; none: as is")
    dim: int = Field(64, ge=1, le=1024, description="components kept per group (64: measured on valid, docs/results.md)")
    l2: bool = Field(True, description="L2-normalise each vector before the projection")


class VariantDef(_Strict):
    groups: tuple[str, ...] = ()          # feature groups fed plainly (vectors: DenseFeat; LightGBM: PCA)
    adaptor_groups: tuple[str, ...] = ()  # vector groups fed through KAR's adaptor (deepctr backbones only)
    twin: str | None = Field(None, description="LLM-derived variants: the no-LLM variant with the same treatment "
                                               "(raw text in place of LLM text); trained whenever this one is")


DEFAULT_VARIANTS: dict[str, VariantDef] = {
    "base": VariantDef(),
    "raw_text": VariantDef(groups=("item_raw_emb",)),
    # KAR's adaptor fed the raw text: the twin of the adaptor variants
    "raw_kar": VariantDef(adaptor_groups=("item_raw_emb",)),
    "llm_item": VariantDef(groups=("item_knowledge_emb",), twin="raw_text"),
    "llm_user": VariantDef(groups=("user_profile_emb",), twin="base"),
    "llm": VariantDef(groups=("item_knowledge_emb", "user_profile_emb"), twin="raw_text"),
    "llm_kar": VariantDef(adaptor_groups=("item_knowledge_emb", "user_profile_emb"), twin="raw_kar"),
    # need the structured tables (generation.structured.enabled): not in the default `variants`
    "structured": VariantDef(groups=("structured",), twin="base"),
    "llm_structured": VariantDef(groups=("item_knowledge_emb", "user_profile_emb", "structured"), twin="raw_text"),
    # + the user's taste (mean liked-item vector) and its match with the candidate: raw text vs LLM text
    "raw_text_taste": VariantDef(groups=("item_raw_emb", "user_taste_raw", "match_raw")),
    "raw_kar_taste": VariantDef(groups=("match_raw",), adaptor_groups=("item_raw_emb", "user_taste_raw")),
    "llm_taste": VariantDef(groups=("item_knowledge_emb", "user_profile_emb", "user_taste_knowledge",
                                    "match_knowledge"), twin="raw_text_taste"),
    "llm_kar_taste": VariantDef(groups=("match_knowledge",),
                                adaptor_groups=("item_knowledge_emb", "user_profile_emb", "user_taste_knowledge"),
                                twin="raw_kar_taste"),
    # item text + taste only: no generated user text needed (generation.user_text: false)
    "llm_item_taste": VariantDef(groups=("item_knowledge_emb", "user_taste_knowledge", "match_knowledge"),
                                 twin="raw_text_taste"),
    "llm_kar_item_taste": VariantDef(groups=("match_knowledge",),
                                     adaptor_groups=("item_knowledge_emb", "user_taste_knowledge"),
                                     twin="raw_kar_taste"),
    # long- AND short-term taste (mean + recency-weighted), item text only: raw text vs LLM text
    "raw_text_taste_st": VariantDef(groups=("item_raw_emb", "user_taste_raw", "user_recent_raw", "match_raw")),
    "llm_item_taste_st": VariantDef(groups=("item_knowledge_emb", "user_taste_knowledge", "user_recent_knowledge",
                                            "match_knowledge"), twin="raw_text_taste_st"),
    # LLM text beside the raw text (both vectors, both tastes): what the LLM adds to what the catalogue says
    "llm_raw_taste": VariantDef(groups=("item_raw_emb", "user_taste_raw", "match_raw", "item_knowledge_emb",
                                        "user_taste_knowledge", "match_knowledge"), twin="raw_text_taste"),
}

# --- Behaviour-tuned encoders (behaviour_encoder.enabled; augment/encode/behaviour_encoder.py): the same item texts encoded
# by MiniLM fine-tuned on training co-occurrence pairs, LLM text and raw-text control alike. Not in the default
# `variants`: the tables exist only when the stage ran.
DEFAULT_FEATURES += (
    _f("item_knowledge_emb_bt", "vector", "item_knowledge_emb_bt", "item_id", "emb"),
    _f("item_raw_emb_bt", "vector", "item_raw_emb_bt", "item_id", "emb"),
    _f("user_taste_knowledge_bt", "vector", "item_knowledge_emb_bt", "user_id", "emb", "history_mean"),
    _f("match_knowledge_bt", "numeric", "item_knowledge_emb_bt", "user_id", "emb", "history_cosine",
       "match_knowledge_bt"),
    _f("user_taste_raw_bt", "vector", "item_raw_emb_bt", "user_id", "emb", "history_mean"),
    _f("match_raw_bt", "numeric", "item_raw_emb_bt", "user_id", "emb", "history_cosine", "match_raw_bt"),
)
DEFAULT_VARIANTS.update({
    "raw_text_bt": VariantDef(groups=("item_raw_emb_bt",)),
    "llm_bt": VariantDef(groups=("item_knowledge_emb_bt", "user_profile_emb"), twin="raw_text_bt"),
    "raw_text_bt_taste": VariantDef(groups=("item_raw_emb_bt", "user_taste_raw_bt", "match_raw_bt")),
    "llm_bt_taste": VariantDef(groups=("item_knowledge_emb_bt", "user_profile_emb", "user_taste_knowledge_bt",
                                       "match_knowledge_bt"), twin="raw_text_bt_taste"),
})


class LightGBMParams(_Strict):
    """Booster settings (passed to lightgbm.train as they are)."""

    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(63, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)


class DeepCtrParams(_Strict):
    """deepctr-torch constructor settings shared by the backbones (each takes what it knows)."""

    dnn_hidden_units: tuple[int, ...] = (256, 128)
    dnn_dropout: float = Field(0.0, ge=0, lt=1)
    l2_reg_linear: float = 1e-5
    l2_reg_embedding: float = 1e-5
    l2_reg_dnn: float = 0.0
    eval_batch_size: int = Field(8192, ge=1)


class TrainConfig(_Strict):
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # 5: enough for a paired 95% t interval over seeds (models/report.py)
    threads: int = 2
    # measured on the cold-user probe (configs/cold-probe.yaml): 1024-row batches stopped after ~80 steps on 28k
    # rows, far short of what the vectors need; 256 with early stopping on valid AUC learns them
    deepfm_epochs: int = 30
    deepfm_batch_size: int = 256
    deepfm_lr: float = 1e-3
    embedding_dim: int = 16
    patience: int = 2
    # deepctr: a training row's user id is replaced by the 'unseen' id with this probability, so the embedding
    # every cold user shares is trained (else it stays at its random init and adds noise to every unseen user)
    unseen_id_dropout: float = Field(0.5, ge=0, lt=1)
    standardize_vectors: bool = Field(True, description="deepctr: vectors scaled per dimension by train mean/std")
    # a cap only: early stopping on valid ends training (the report flags models that ran to the cap; at 23k users
    # LightGBM used 822-997 of 1,000)
    lgbm_rounds: int = Field(5000, ge=1)
    lgbm_early_stopping: int = 50
    # every vector group, every backbone and the adaptor: L2, then PCA / whitening fitted on training items only
    # (models/vector_reduce.py). LightGBM always gets the reduced columns (384 raw ones would be split on noise).
    vector_reduce: VectorReduce = VectorReduce()
    lightgbm: LightGBMParams = LightGBMParams()
    deepctr: DeepCtrParams = DeepCtrParams()
    # --- models/: backbones x variants x seeds of one retrain run ---
    # default = 3 x 11 models, ~4.5 min on a quiet 2-core box at ML-100K; the full ablation adds llm_item,
    # llm_user (and dcnmix, autoint): see `python -m models --help`
    backbones: tuple[str, ...] = ("lightgbm", "deepfm", "din")
    variants: tuple[str, ...] = Field(("base", "raw_text", "llm", "llm_kar"),
                                      description="the variants a run trains; the twin of each LLM-derived one is "
                                                  "added (run_variants)")
    variant_defs: dict[str, VariantDef] = Field(default_factory=lambda: dict(DEFAULT_VARIANTS),
                                                description="added to / replacing the built-in variants")
    features: tuple[FeatureEntry, ...] = DEFAULT_FEATURES
    history_len: int = Field(20, ge=1, description="DIN: the user's most recent items before each sample")
    taste_len: int = Field(50, ge=1, description="taste vectors: the user's most recent liked items averaged")
    taste_half_life: float = Field(10.0, gt=0, description="history_recency: items until an item's weight halves")
    sequence_backbones: tuple[str, ...] = Field(("din",), description="deepctr backbones fed the item history")
    din_att_activation: Literal["prelu", "Dice", "sigmoid", "relu"] = "prelu"
    kar_shared_experts: int = Field(1, ge=0)  # 1+1: adaptor within ~5% of DenseFeat speed (2+2: +45%)
    kar_specific_experts: int = Field(1, ge=1)
    kar_hidden: int = Field(128, ge=1)
    kar_out_dim: int = Field(32, ge=1)
    model_name: str = Field(MODEL_NAME, pattern=r"^[A-Za-z0-9_.-]+$", description="registry name of the served model")
    promotion_margin: float = Field(0.001, ge=0, description="the gate's margin in AUC (promotion_rule says how)")
    # margin: the challenger's AUC beats the champion's by more than promotion_margin (a point estimate: on a small
    # slice, a decision on noise). superiority: the LOW end of the paired 95% bootstrap interval of the difference
    # is above promotion_margin. non_inferiority: its low end is above -promotion_margin (the challenger, with
    # fresher data and features, is served unless it is worse by more than the margin with 95% confidence).
    promotion_rule: Literal["margin", "superiority", "non_inferiority"] = "margin"

    @model_validator(mode="before")
    @classmethod
    def _add_features(cls, data):
        """`add_features: [...]` appends entries to `features` (the defaults unless `features` is given), so a new
        feature group is one entry in a config. It is folded in here: the saved config lists every feature."""
        if isinstance(data, dict) and "add_features" in data:
            data = dict(data)
            extra = data.pop("add_features") or []
            base = data.get("features", DEFAULT_FEATURES)
            data["features"] = [*base, *extra]
        return data

    @field_validator("variant_defs", mode="before")
    @classmethod
    def _over_defaults(cls, value):
        """A config names only the variants it adds or changes; the built-in ones stay defined."""
        if isinstance(value, dict):
            return {**DEFAULT_VARIANTS, **value}
        return value

    @model_validator(mode="after")
    def _spec_is_consistent(self) -> "TrainConfig":
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"train.features: duplicate name(s) {dup}")
        if sum(f.type == "sequence" for f in self.features) > 1:
            raise ValueError("train.features: at most one sequence feature (the item history)")
        groups = {f.feature_group for f in self.features if f.feature_group}
        unknown = [v for v in self.variants if v not in self.variant_defs]
        if unknown:
            raise ValueError(f"train.variants: unknown variant(s) {unknown}; known: {sorted(self.variant_defs)}")
        for name, v in self.variant_defs.items():
            if v.twin is not None and v.twin not in self.variant_defs:
                raise ValueError(f"train.variant_defs.{name}.twin: unknown variant {v.twin!r}")
        vector_groups = {f.feature_group for f in self.features if f.type == "vector"}
        for name in self.run_variants():
            v = self.variant_defs[name]
            missing = [g for g in (*v.groups, *v.adaptor_groups) if g not in groups]
            if missing:
                raise ValueError(f"train.variant_defs.{name}: group(s) {missing} name no train.features entry "
                                 f"(groups: {sorted(groups)})")
            bad = [g for g in v.adaptor_groups if g not in vector_groups]
            if bad:
                raise ValueError(f"train.variant_defs.{name}: adaptor group(s) {bad} hold no vector feature")
            if v.twin is not None and self.llm_derived(v.twin):
                raise ValueError(f"train.variant_defs.{name}.twin: {v.twin!r} reads LLM tables "
                                 f"{sorted(self.llm_tables_read(v.twin))}: a twin must need no LLM")
        return self

    def llm_tables_read(self, variant: str) -> set[str]:
        """The LLM-written tables (LLM_TABLES) the features a variant switches on read."""
        v = self.variant_defs[variant]
        on = {*v.groups, *v.adaptor_groups}
        return {f.source for f in self.features if f.feature_group in on and f.source in LLM_TABLES}

    def llm_derived(self, variant: str) -> bool:
        return bool(self.llm_tables_read(variant))

    def run_variants(self) -> tuple[str, ...]:
        """`variants` plus the twin of every LLM-derived one among them (in that order): a retrain always trains
        the control its report and gate compare with."""
        names = list(self.variants)
        for name in self.variants:
            twin = self.variant_defs[name].twin
            if twin is not None and self.llm_derived(name):
                names.append(twin)
        return tuple(dict.fromkeys(names))
