"""The behaviour-aligned encoder (augment/encode/behaviour_encoder.py): pairs come from training-time positives only, the
tuned encoder is a versioned artefact reused on a re-run (head mode: a sentence-transformers model that reproduces
the table vectors; full mode: the whole fine-tuned model), and the stage writes both tables (LLM text and
control)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from augment.encode.behaviour_encoder import (
    _batches,
    base_vectors,
    encoder_version,
    finetune,
    head_encode,
    mine_pairs,
    training_rows,
)
from configs import BehaviourEncoderConfig


def _splits(rows: list[tuple]) -> pd.DataFrame:
    """(user_id, item_id, t, label, role, split[, sampled]) rows -> an interaction_splits-shaped frame."""
    frame = pd.DataFrame([r[:6] for r in rows], columns=["user_id", "item_id", "t", "label", "role", "split"])
    frame["timestamp"] = pd.to_datetime(frame.pop("t"), unit="s", utc=True)
    frame["sampled"] = [bool(r[6]) if len(r) > 6 else False for r in rows]
    frame["rating"] = np.float32(4.0)
    return frame


FRAME = _splits([
    # train user: history then samples (a re-rated item, a negative, a sampled negative)
    (1, 10, 0, 1, "history", "train"), (1, 11, 1, 1, "history", "train"), (1, 12, 2, 1, "sample", "train"),
    (1, 10, 3, 1, "sample", "train"), (1, 90, 4, 0, "sample", "train"), (1, 91, 5, 1, "sample", "train", True),
    # valid user: history counts (it is before the cutoff, what prompts read); its samples never do
    (2, 20, 0, 1, "history", "valid"), (2, 21, 1, 1, "history", "valid"),
    (2, 70, 2, 1, "sample", "valid"), (2, 71, 3, 1, "sample", "valid"),
    # test user: samples only
    (3, 80, 0, 1, "sample", "test"), (3, 81, 1, 1, "sample", "test"), (3, 10, 2, 1, "sample", "test"),
])


@pytest.mark.timeout(60)
def test_pairs_come_from_training_positives_only():
    used = training_rows(FRAME)
    assert not ((used.merge(FRAME)["role"] == "sample") & (used.merge(FRAME)["split"] != "train")).any()
    pairs = mine_pairs(FRAME, window=5, max_pairs=100, seed=0)
    assert pairs.values.tolist() == [[10, 11], [10, 12], [11, 12], [20, 21]]
    held_out = {70, 71, 80, 81, 90, 91}  # valid/test samples, a negative, a sampled negative
    assert not held_out & set(pairs.values.ravel())
    assert mine_pairs(FRAME, window=1, max_pairs=100, seed=0).values.tolist() == [[10, 11], [10, 12], [11, 12],
                                                                                  [20, 21]]
    assert mine_pairs(FRAME, 5, 100, 0, keep_items={10, 11, 20}).values.tolist() == [[10, 11]]


@pytest.mark.timeout(60)
def test_pair_mining_is_deterministic_and_capped():
    rng = np.random.default_rng(0)
    rows = [(u, int(i), k, 1, "history" if k < 5 else "sample", "train")
            for u in range(1, 40) for k, i in enumerate(rng.choice(60, 12, replace=False))]
    frame = _splits(rows)
    full = mine_pairs(frame, 3, 10_000, 0)
    a = mine_pairs(frame, 3, 50, seed=7)
    assert len(full) > 50 and len(a) == 50
    assert a.equals(mine_pairs(frame.sample(frac=1, random_state=1), 3, 50, seed=7))  # row order does not matter
    assert not a.equals(mine_pairs(frame, 3, 50, seed=8))
    assert set(map(tuple, a.values)) <= set(map(tuple, full.values)) and (a["item_a"] < a["item_b"]).all()


TOPICS = ["space travel", "cooking pasta", "medieval war", "jazz music", "deep sea fish", "chess openings"]
TEXTS_A = [f"A story about {TOPICS[i % 6]}, part {i}" for i in range(32)]
TEXTS_B = [f"Notes on {TOPICS[i % 6]} number {100 + i}" for i in range(32)]


@pytest.mark.timeout(60)
def test_batches_never_repeat_an_item():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 30, 500), rng.integers(30, 40, 500)  # ten very popular items on the b side
    batches = _batches(a, b, 16, rng.permutation(500))
    for batch in batches:
        keys = [*a[batch], *b[batch]]
        assert len(keys) == len(set(keys)) and 1 < len(batch) <= 16
    assert len({i for batch in batches for i in batch}) == sum(map(len, batches))  # each pair at most once


@pytest.mark.vllm  # the real MiniLM (sentence-transformers)
@pytest.mark.timeout(300)
def test_head_mode_artefact_reproduces_the_vectors_and_is_reused(tmp_path):
    from sentence_transformers import SentenceTransformer

    from augment.embedded_models import minilm_dir

    cfg = BehaviourEncoderConfig(head_batch_size=8, head_epochs=10, head_lr=1e-2, max_seq_length=32)
    assert cfg.mode == "head" and cfg.pair_cap == 100_000
    out = tmp_path / "encoders" / encoder_version({"test": "head"})
    base = base_vectors(minilm_dir(), TEXTS_A + TEXTS_B, cfg)
    manifest = finetune(minilm_dir(), TEXTS_A, TEXTS_B, cfg, 0, out, lineage={"interaction_splits": "abc"},
                        base=base)
    assert not manifest["reused"] and manifest["mode"] == "head" and manifest["texts_encoded"] == 0
    assert len(manifest["losses"]) == 10 and manifest["losses"][-1] < manifest["losses"][0]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["lineage"] == {"interaction_splits": "abc"} and saved["pairs"] == 32
    assert saved["params"]["head_batch_size"] == 8 and "batch_size" not in saved["params"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp dir left beside it
    # The artefact is a plain sentence-transformers model: loaded offline, it encodes texts into the same vectors
    # the stage writes (the head applied to the base vectors).
    modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Normalize", "Dense", "Normalize"]
    table = head_encode(out, np.stack([base[t] for t in TEXTS_A[:4] + TEXTS_B[:4]]))
    loaded = SentenceTransformer(str(out), device="cpu").encode(TEXTS_A[:4] + TEXTS_B[:4])
    np.testing.assert_allclose(loaded, table, atol=1e-5)
    # A trained pair got closer than it was.
    a0, b0 = np.stack([base[t] for t in TEXTS_A]), np.stack([base[t] for t in TEXTS_B])
    a1, b1 = head_encode(out, a0), head_encode(out, b0)
    assert ((a1 * b1).sum(1) > (a0 * b0).sum(1)).mean() > 0.5 and (a1 * b1).sum(1).mean() > (a0 * b0).sum(1).mean()
    before = (out / "3_Dense" / "model.safetensors").stat().st_mtime_ns
    again = finetune(minilm_dir(), TEXTS_A, TEXTS_B, cfg, 0, out)
    assert again["reused"] and again["losses"] == manifest["losses"]
    assert (out / "3_Dense" / "model.safetensors").stat().st_mtime_ns == before
    # Same pairs and seed, same head; encoding the missing texts itself gives the same head too.
    twin = finetune(minilm_dir(), TEXTS_A, TEXTS_B, cfg, 0, tmp_path / "encoders" / "twin")
    assert twin["losses"] == manifest["losses"] and twin["texts_encoded"] == 64
    np.testing.assert_allclose(head_encode(tmp_path / "encoders" / "twin", a0), a1, atol=1e-6)


@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_full_mode_writes_a_versioned_artefact_and_reuses_it(tmp_path):
    from sentence_transformers import SentenceTransformer

    from augment.embedded_models import minilm_dir

    texts_a, texts_b = TEXTS_A, TEXTS_B
    cfg = BehaviourEncoderConfig(mode="full", batch_size=8, max_seq_length=32, lr=1e-4)
    assert cfg.pair_cap == 512
    out = tmp_path / "encoders" / encoder_version({"test": 1})
    manifest = finetune(minilm_dir(), texts_a, texts_b, cfg, 0, out, lineage={"interaction_splits": "abc"})
    assert not manifest["reused"] and manifest["steps"] >= 3 and len(manifest["losses"]) == manifest["steps"]
    assert manifest["mode"] == "full"
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["lineage"] == {"interaction_splits": "abc"} and saved["pairs"] == 32
    assert saved["params"]["batch_size"] == 8 and saved["seconds"] > 0
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp dir left beside it
    before = (out / "model.safetensors").stat().st_mtime_ns
    again = finetune(minilm_dir(), texts_a, texts_b, cfg, 0, out)
    assert again["reused"] and again["losses"] == manifest["losses"]
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    base = SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts_a[:4], normalize_embeddings=True)
    tuned = SentenceTransformer(str(out), device="cpu").encode(texts_a[:4], normalize_embeddings=True)
    assert tuned.shape == base.shape and not np.allclose(tuned, base, atol=1e-4)


@pytest.mark.vllm  # the real MiniLM (sentence-transformers)
@pytest.mark.timeout(600)
def test_stage_writes_both_tables_and_reuses_them(tiny, tmp_path):
    from augment import stages

    cfg, v = tiny
    store = stages.store_for(cfg)
    assert stages.behaviour_encoder(cfg, v) == {"skipped": "behaviour_encoder.enabled is false"}
    items = store.read_pandas("items", v["items"])
    text = pd.DataFrame({"item_id": items["item_id"],
                         "text": [f"{t} is a film people like to talk about at length." for t in items["title"]]})
    text.to_csv(tmp_path / "knowledge.csv", index=False)
    v.update(stages.import_text(cfg, "item", tmp_path / "knowledge.csv",
                                {t: v[t] for t in ("items", "item_id_map")}))
    cfg = cfg.model_copy(update={"behaviour_encoder": BehaviourEncoderConfig(
        enabled=True, head_batch_size=8, max_pairs=48, max_seq_length=32)})
    out = stages.behaviour_encoder(cfg, v)
    assert set(out) == {"item_knowledge_emb_bt", "item_raw_emb_bt"}
    knowledge = store.read_pandas("item_knowledge_emb_bt", out["item_knowledge_emb_bt"])
    raw = store.read_pandas("item_raw_emb_bt", out["item_raw_emb_bt"])
    assert len(knowledge) == len(raw) == len(items) == 20
    assert len(knowledge["emb"].iloc[0]) == 384 and "event_timestamp" in knowledge and "event_timestamp" not in raw
    encoders = sorted(p.name for p in (cfg.workdir_path / "encoders").iterdir())
    assert len(encoders) == 2  # one per text, tuned on the same pairs
    manifests = [json.loads((cfg.workdir_path / "encoders" / e / "manifest.json").read_text()) for e in encoders]
    assert manifests[0]["pairs"] == manifests[1]["pairs"] == 48
    assert {m["lineage"]["pairs"]["interaction_splits"] for m in manifests} == {v["interaction_splits"]}
    assert {knowledge["encoder"].iloc[0].rsplit(":", 1)[1], raw["encoder"].iloc[0].rsplit(":", 1)[1]} == set(encoders)
    # The table rows are what the saved artefact encodes: the head applied to the base vectors, no second pass
    # (stored as float16, hence rtol: half a float16 step; the float32 vectors match to 1e-5 in the head test).
    from sentence_transformers import SentenceTransformer

    enc = knowledge["encoder"].iloc[0].rsplit(":", 1)[1]
    model = SentenceTransformer(str(cfg.workdir_path / "encoders" / enc), device="cpu")
    np.testing.assert_allclose(model.encode(text.set_index("item_id")["text"].reindex(knowledge["item_id"][:5])
                                            .tolist()), np.stack(knowledge["emb"][:5]), rtol=5e-4, atol=1e-5)
    # The control's vectors are not the plain encoder's: the same text, a different (tuned) encoder.
    v.update(stages.encode(cfg, "item_raw", v))
    plain = store.read_pandas("item_raw_emb", v["item_raw_emb"])
    assert not np.allclose(np.stack(plain["emb"]), np.stack(raw["emb"]), atol=1e-3)
    assert stages.behaviour_encoder(cfg, v) == out  # a re-run reuses everything


@pytest.mark.timeout(60)
def test_config_section_and_train_variants(tmp_path, make_tiny_config, make_tiny_stream_config):
    from pydantic import ValidationError

    from configs import TrainConfig, load_config

    with pytest.raises(ValidationError, match="windw"):
        load_config(make_tiny_config(tmp_path, **{"behaviour_encoder.windw": 2}))
    with pytest.raises(ValidationError, match="one-shot only"):
        load_config(make_tiny_stream_config(tmp_path, **{"behaviour_encoder.enabled": True}))
    tc = TrainConfig(variants=("raw_text_bt", "llm_bt"))
    assert tc.variant_defs["llm_bt"].groups == ("item_knowledge_emb_bt", "user_profile_emb")
    assert {f.source for f in tc.features if f.name.endswith("_bt")} == {"item_knowledge_emb_bt", "item_raw_emb_bt"}
    assert TrainConfig().variants == ("base", "raw_text", "llm", "llm_kar")  # the default run is unchanged
    with pytest.raises(ValidationError, match="mode"):
        load_config(make_tiny_config(tmp_path, **{"behaviour_encoder.mode": "lora"}))
    with pytest.raises(ValidationError, match="max_pairs"):
        BehaviourEncoderConfig(max_pairs=0)
    assert BehaviourEncoderConfig().pair_cap == 100_000 and BehaviourEncoderConfig(mode="full").pair_cap == 512
    assert BehaviourEncoderConfig(mode="full", max_pairs=64).pair_cap == 64
