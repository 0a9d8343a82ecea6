"""The typed run configuration: one YAML file per run, unknown keys rejected.

Every stage receives the section it needs; the whole resolved config is saved into every manifest so a table or
model can be traced back to the exact settings that made it. `augment` reads the data/split/prompts/generation/
encode sections, `models` the train section; neither imports the other.

    python -m augment show-config configs/ml100k.yaml [--set generation.shards=4]
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml
from pydantic import model_validator

from configs.data_config import (  # noqa: F401 - re-exported
    ITEM_BASE_COLUMNS,
    RAW_ITEM_DEFAULT,
    ColumnMap,
    DataConfig,
    GenericSource,
    IdTypes,
    NegativeSampling,
    SplitConfig,
)
from configs.encode_config import (  # noqa: F401 - re-exported
    FULL_MAX_PAIRS,
    HEAD_MAX_PAIRS,
    BehaviourEncoderConfig,
    EncodeConfig,
    EncoderProbeConfig,
)
from configs.generation_config import (  # noqa: F401 - re-exported
    ENGINE_ARGS_SET_BY_CODE,
    EngineConfig,
    ExternalText,
    ExternalTexts,
    GenerationConfig,
    OpenAIBackendConfig,
    PromptConfig,
    RayBackendConfig,
    SamplingConfig,
    StructuredConfig,
    ValidationConfig,
)
from configs.store_config import FeatureStoreConfig, S3StoreOptions  # noqa: F401 - re-exported
from configs.stream_config import RefreshPolicy, StreamConfig, cron_schedule, interval_tag  # noqa: F401 - re-exported
from configs.strict import Strict as _Strict
from configs.train_config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (editable install)


class RunConfig(_Strict):
    workdir: str = "var"
    feature_store: FeatureStoreConfig = FeatureStoreConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    prompts: PromptConfig = PromptConfig()
    generation: GenerationConfig = GenerationConfig()
    encode: EncodeConfig = EncodeConfig()
    train: TrainConfig = TrainConfig()
    behaviour_encoder: BehaviourEncoderConfig = BehaviourEncoderConfig()
    encoder_probe: EncoderProbeConfig = EncoderProbeConfig()
    stream: StreamConfig | None = None  # daily operation over data intervals; None: one run over the whole log

    @model_validator(mode="after")
    def _stream_supported(self) -> "RunConfig":
        if self.stream is None:
            return self
        # A key that depends on which ids today's file happens to hold would change every key the day one
        # non-numeric id arrives.
        if "auto" in (self.data.id_types.user, self.data.id_types.item):
            raise ValueError("stream needs declared id types: set data.id_types.user and .item to int or string")
        if self.generation.structured.enabled:
            raise ValueError("stream: structured generation is one-shot only for now (it keys users by user_id "
                             "alone; stream profiles are keyed by user and cutoff)")
        if self.behaviour_encoder.enabled:  # static item vectors would learn from held-out intervals' history rows
            raise ValueError("stream: behaviour_encoder is one-shot only for now")
        return self

    @model_validator(mode="after")
    def _user_text_variants(self) -> "RunConfig":
        if self.generation.user_text:
            return self
        tc = self.train
        reading = [v for v in tc.run_variants() if "user_profile_emb" in tc.llm_tables_read(v)]
        if reading:
            raise ValueError(f"train.variants: {reading} read user_profile_emb, which generation.user_text: false "
                             "does not make; use variants without user text (e.g. llm_item, llm_item_taste, "
                             "llm_kar_item_taste, llm_raw_taste)")
        return self

    @model_validator(mode="after")
    def _raw_columns_exist(self) -> "RunConfig":
        known = [*RAW_ITEM_DEFAULT, *self.data.item_text_columns]
        unknown = [c for c in self.encode.raw_item_columns if c not in known]
        if unknown or len(set(self.encode.raw_item_columns)) != len(self.encode.raw_item_columns):
            raise ValueError(f"encode.raw_item_columns {self.encode.raw_item_columns}: each once, from {known} "
                             "(add item text to data.item_text_columns first)")
        return self

    def digest(self) -> str:
        """A stable short hash of the resolved config."""
        from common.files import json_digest  # lazy: DAG files import configs at parse time

        return json_digest(self.model_dump(mode="json"))

    @property
    def stats_path(self) -> Path:
        """Where stages write their stats (common/stage_stats.py): one directory per interval in a daily run,
        so an interval's LLM calls and wall time stay apart from the others'."""
        base = self.workdir_path / "stats"
        if self.stream is None or self.stream.end is None:
            return base
        return base / f"end={interval_tag(self.stream.end)}"

    def with_stream_end(self, end: datetime) -> "RunConfig":
        """This config for the run whose interval ends at `end` (validated: on the interval grid)."""
        if self.stream is None:
            raise ValueError("with_stream_end: the config has no stream section")
        raw = self.model_dump(mode="json")
        raw["stream"]["end"] = end.isoformat()
        return RunConfig.model_validate(raw)

    @property
    def feature_store_uri(self) -> str:
        """The store's location: feature_store.uri (relative paths against the repository root), else
        <workdir>/feature_store."""
        uri = self.feature_store.uri
        if uri is None:
            return str(self.workdir_path / "feature_store")
        if "://" in uri:
            return uri
        path = Path(uri).expanduser()
        return str(path if path.is_absolute() else (REPO_ROOT / path).resolve())

    @property
    def workdir_path(self) -> Path:
        """Relative workdirs are relative to the repository root, so the CLI, the DAGs and any worker's CWD agree."""
        path = Path(self.workdir).expanduser()
        return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def parse_overrides(pairs: list[str]) -> dict:
    """`--set key.path=value` pairs (values parsed as YAML) -> {dotted key: value} for load_config."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read a YAML run config; unknown keys anywhere are an error naming the key."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return RunConfig.model_validate(raw)
