"""Real vLLM (CPU build) on the embedded SmolLM2, and the real MiniLM encoder: structure, not exact text."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from augment.config import EncodeConfig, GenerationConfig, SamplingConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gen_cfg() -> GenerationConfig:
    return GenerationConfig(shards=1, sampling=SamplingConfig(max_tokens_item=12, max_tokens_user=12),
                            engine={"max_num_seqs": 32, "max_model_len": 1024})


def test_real_vllm_chat_generates_text(tmp_path, gen_cfg):
    from augment import generate as gen
    from augment.llm_engine import model_id
    from augment.prompts import build_item_prompts, load_template

    items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["Toy Story", "Heat", "Fargo"],
                          "year": pd.array([1995, 1995, 1996], dtype="Int64"),
                          "genres": [["Animation"], ["Crime"], ["Crime", "Drama"]]})
    prompts = build_item_prompts(items, load_template("item_knowledge_v1"))
    model = model_id(gen_cfg.engine)
    stats = gen.generate_shard(prompts, "item", 0, gen_cfg, tmp_path, model)
    assert stats.generated == 3 and stats.output_tokens > 0 and stats.prompt_tokens > 3 * 20
    texts = gen.collect_texts(prompts, "item", gen_cfg, tmp_path, model,
                              pd.Series(pd.Timestamp(0, tz="UTC"), index=prompts.index))
    assert (texts["text"].str.strip().str.len() > 0).all()
    assert set(texts["finish_reason"]) <= {"length", "stop"}
    assert (texts["output_tokens"] <= 12).all()
    again = gen.generate_shard(prompts, "item", 0, gen_cfg, tmp_path, model)
    assert again.generated == 0 and again.skipped == 3
    # Same settings repeat exactly (greedy, fixed seed).
    other = tmp_path / "other"
    gen.generate_shard(prompts, "item", 0, gen_cfg, other, model)
    repeat = gen.read_cache(other).set_index("prompt_hash")["text"]
    first = gen.read_cache(tmp_path).set_index("prompt_hash")["text"]
    assert repeat.sort_index().tolist() == first.sort_index().tolist()
    assert json.loads(prompts["messages"].iloc[0])[0]["role"] == "system"


def test_real_minilm_encoder():
    from augment.encode import dimension, encode_texts, raw_item_text

    cfg = EncodeConfig()
    vecs = encode_texts(["A funny animated film about toys", "An animated comedy with talking toys",
                         "A grim crime thriller about a bank heist"], cfg)
    assert vecs.shape == (3, dimension(cfg)) == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert encode_texts([], cfg).shape[0] == 0
    assert raw_item_text("Heat", 1995, ["Crime", "Thriller"]) == "Heat (1995) Genres: Crime, Thriller"
