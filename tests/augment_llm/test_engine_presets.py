"""Every documented engine preset is a valid EngineConfig and the repo default matches the cpu-dev preset."""
import pytest

from augment.config import EngineConfig
from augment.engine_presets import PRESETS, preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate(name):
    cfg = preset(name, model="/models/some-8b")
    assert cfg.model == "/models/some-8b" and cfg.max_num_seqs >= 128


def test_cpu_default_is_the_cpu_preset():
    assert preset("cpu-dev") == EngineConfig()
    with pytest.raises(KeyError, match="unknown engine preset"):
        preset("tpu")
