"""The typed run configuration (configs/run_config.py) and the example run configs (configs/*.yaml).

Its own package so that `augment` and `models` both read it without importing each other.

    from configs import RunConfig, load_config
    python -m augment show-config configs/ml100k.yaml
"""
from configs.run_config import (
                                REPO_ROOT,
                                BehaviourEncoderConfig,
                                ColumnMap,
                                DataConfig,
                                EncodeConfig,
                                EngineConfig,
                                ExternalText,
                                ExternalTexts,
                                FeatureStoreConfig,
                                GenerationConfig,
                                GenericSource,
                                PromptConfig,
                                RunConfig,
                                S3StoreOptions,
                                SamplingConfig,
                                SplitConfig,
                                StreamConfig,
                                StructuredConfig,
                                TrainConfig,
                                ValidationConfig,
                                load_config,
                                parse_overrides,
)

__all__ = ["REPO_ROOT", "BehaviourEncoderConfig", "ColumnMap", "DataConfig", "EncodeConfig", "EngineConfig", "ExternalText", "ExternalTexts",
           "FeatureStoreConfig", "GenerationConfig", "S3StoreOptions",
           "GenericSource", "PromptConfig", "RunConfig", "SamplingConfig", "SplitConfig", "StreamConfig", "StructuredConfig",
           "TrainConfig", "ValidationConfig", "load_config", "parse_overrides"]
