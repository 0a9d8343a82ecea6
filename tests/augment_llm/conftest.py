"""Fixtures shared by the augment stage tests."""
import pytest


@pytest.fixture
def tiny(tmp_path, make_tiny_config):
    """(config, versions) of the tiny dataset after ingest + split (no LLM)."""
    from augment import stages
    from configs import load_config

    cfg = load_config(make_tiny_config(tmp_path))
    versions = stages.ingest(cfg)
    versions.update(stages.split(cfg, versions))
    return cfg, versions
