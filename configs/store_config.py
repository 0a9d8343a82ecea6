"""The `feature_store:` section of a run config: where the feature tables live (a path or an object-store URI).

    from configs.store_config import FeatureStoreConfig
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from configs.strict import Strict as _Strict


class S3StoreOptions(_Strict):
    """How to reach an S3 (or S3-compatible: MinIO, Ceph, moto) endpoint. Credentials never go here: they come from
    the AWS default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, roles)."""

    endpoint_override: str | None = Field(None, description="host:port or http(s)://host:port; default "
                                          "AWS_ENDPOINT_URL, else AWS itself")
    region: str | None = Field(None, description="default AWS_REGION / AWS_DEFAULT_REGION")
    scheme: Literal["https", "http"] | None = Field(None, description="default https (or the endpoint URL's)")
    force_virtual_addressing: bool | None = None
    connect_timeout: float | None = Field(None, gt=0)
    request_timeout: float | None = Field(None, gt=0)
    max_attempts: int | None = Field(None, ge=1)


class FeatureStoreConfig(_Strict):
    """Where the run's feature tables live (feature_store/locations.py). The generation and encode caches stay in
    the local workdir whatever this says."""

    uri: str | None = Field(None, description="None: <workdir>/feature_store; a path (relative: to the repository "
                            "root), s3://bucket/prefix, gs://bucket/prefix or any fsspec URL")
    s3: S3StoreOptions = S3StoreOptions()

    @model_validator(mode="after")
    def _no_credentials(self) -> "FeatureStoreConfig":
        from urllib.parse import urlsplit

        if self.uri is not None:
            netloc = urlsplit(self.uri).netloc
            if "@" in netloc:
                raise ValueError("feature_store.uri: credentials do not go in the config; use the environment "
                                 "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...)")
        return self
