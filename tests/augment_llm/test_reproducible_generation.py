"""generation.deterministic: the same generation twice, each with its own engine start and workdir, publishes
byte-identical text tables, even when the second run cuts the prompts into other batches (one shard, not two).

Real vLLM (CPU build) on the embedded SmolLM2 in float32. Measured with the same test in bfloat16 (dtype auto on
an AMX CPU), even with the SAME shard plan in both runs: 6 of 20 item texts differed (configs/run_config.py
GenerationConfig)."""
from __future__ import annotations

import json

import pytest

# Two engine starts (20-60 s each on a 2-core CPU) plus a little float32 generation: ~110 s.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]


def _run(config_path, workdir, num_shards: int) -> dict:
    from augment import stages
    from augment.kinds import KINDS
    from augment.llm import engine as llm_engine
    from configs import load_config

    cfg = load_config(config_path, {"workdir": str(workdir)})  # one data file, two workdirs: two fresh clones
    v = stages.ingest(cfg)
    v |= stages.split(cfg, v)
    v |= stages.prompts(cfg, v)
    store = stages.store_for(cfg)
    out = {"dtype": llm_engine.engine_dtype(cfg.generation.engine)}
    for kind in ("item", "user"):
        shard_stats = stages.generate(cfg, kind, v, num_shards=num_shards)
        assert sum(s["generated"] for s in shard_stats) > 0
        table = KINDS[kind].text_table
        version = stages.publish_texts(cfg, kind, v)[table]
        out[kind] = {"version": version, "sha256": store.manifest(table, version)["files"][0]["sha256"],
                     "text": store.read_pandas(table, version)["text"].tolist()}
    llm_engine.shutdown_engines()  # the next run starts its own engine, as a fresh clone would
    return out


def test_same_generation_twice_is_byte_identical(tmp_path, make_tiny_config):
    path = make_tiny_config(tmp_path, **{"generation.deterministic": True,
                                         "generation.sampling.max_tokens_item": 24,
                                         "generation.sampling.max_tokens_user": 24})
    first = _run(path, tmp_path / "a", num_shards=2)
    second = _run(path, tmp_path / "b", num_shards=1)
    assert first["dtype"] == second["dtype"] == "float32"
    for kind in ("item", "user"):
        a, b = first[kind], second[kind]
        assert sum(bool(t.strip()) for t in a["text"]) >= len(a["text"]) // 2  # real text, not all rejected
        differ = [(x, y) for x, y in zip(a["text"], b["text"]) if x != y]
        assert not differ, f"{kind} ({first['dtype']}): {len(differ)} texts differ, e.g. {json.dumps(differ[0])}"
        assert a["version"] == b["version"]
        assert a["sha256"] == b["sha256"], f"{kind}: same text but different bytes"
