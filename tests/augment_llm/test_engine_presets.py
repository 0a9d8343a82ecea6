"""Every documented engine preset is a valid EngineConfig and the repo default matches the cpu-dev preset."""
import pytest

from augment.llm.engine_presets import PRESETS, preset
from configs import EngineConfig


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate(name):
    cfg = preset(name, model="/models/some-8b")
    assert cfg.model == "/models/some-8b" and cfg.max_num_seqs >= 128


def test_cpu_default_is_the_cpu_preset():
    assert preset("cpu-dev") == EngineConfig()
    with pytest.raises(KeyError, match="unknown engine preset"):
        preset("tpu")


def test_auto_dtype_is_bf16_only_where_the_cpu_has_it(monkeypatch, tmp_path):
    from augment.llm import engine as llm_engine
    assert llm_engine.cpu_has_native_bf16("flags : fpu avx2 avx512f avx512_bf16 amx_tile")
    assert not llm_engine.cpu_has_native_bf16("flags : fpu sse avx avx2 fma")
    monkeypatch.setattr(llm_engine, "_has_gpu", lambda: False)
    monkeypatch.setattr(llm_engine, "cpu_has_native_bf16", lambda cpuinfo=None: False)
    assert llm_engine.engine_dtype(EngineConfig()) == "float32"
    assert llm_engine.engine_dtype(EngineConfig(dtype="bfloat16")) == "bfloat16"  # an explicit choice stands
    assert llm_engine.model_id(EngineConfig(model=str(tmp_path))) == f"{tmp_path}@{tmp_path.name}#float32"
    monkeypatch.setattr(llm_engine, "_has_gpu", lambda: True)
    assert llm_engine.engine_dtype(EngineConfig()) == "bfloat16"


def test_sizing_table_names_known_presets_and_says_what_was_measured():
    from augment.llm.engine_presets import SIZING, sizing_table

    assert {s.preset for s in SIZING} <= set(PRESETS)
    table = sizing_table().splitlines()
    assert len(table) == 2 + len(SIZING)
    measured = [s for s in SIZING if s.measured_here]
    assert measured and all(s.preset.startswith("cpu") for s in measured)  # no GPU figure is ours
    assert all(s.source for s in SIZING)
