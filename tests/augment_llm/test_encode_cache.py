"""The encode stage's content-addressed vector cache (augment/encode/cache.py) with the real embedded MiniLM: a new
version of a text table runs only its changed texts through the encoder, a fully cached one loads no encoder, a
setting that shapes vectors misses the old cache, and a crash while writing the cache leaves no half file.

    python -m pytest tests/augment_llm/test_encode_cache.py -q
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from augment import stages
from augment.encode import cache as encode_cache
from augment.encode import text_encoder as encode_module

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

TEXTS = {i: f"Tagged by users as: tag{i}, a second tag for item {i}" for i in range(1, 21)}
CHANGED = {3: "Tagged by users as: heist, slow burn, great score", 7: "Tagged by users as: pixar, toys, friendship"}


@pytest.fixture
def encoder_spy(monkeypatch) -> list[list[str]]:
    """Spy on augment.encode.text_encoder.encode_texts: records the texts of every call, then encodes them for real."""
    calls: list[list[str]] = []
    real = encode_module.encode_texts

    def spy_encode_texts(texts, cfg):
        calls.append(list(texts))
        return real(texts, cfg)

    monkeypatch.setattr(encode_module, "encode_texts", spy_encode_texts)
    return calls


def _item_text(cfg, v: dict, tmp_path, texts: dict[int, str], name: str) -> dict:
    """v plus a new item_knowledge_text version holding `texts` (imported, so no LLM)."""
    f = tmp_path / f"{name}.csv"
    f.write_text("item_id,text\n" + "".join(f'{i},"{t}"\n' for i, t in texts.items()))
    return {**v, **stages.import_text(cfg, "item", f, {t: v[t] for t in ("items", "item_id_map")}, source="tags")}


def _encode(cfg, v: dict) -> tuple[dict, dict]:
    """(the item_knowledge_emb table as {item_id: float16 vector}, the stage's stats)."""
    out = stages.encode(cfg, "item", v)
    table = stages.store_for(cfg).read_pandas("item_knowledge_emb", out["item_knowledge_emb"])
    stats = json.loads((stages.stats_dir(cfg) / "encode-item.json").read_text())
    return {int(k): np.asarray(e) for k, e in zip(table["item_id"], table["emb"])}, stats


def _fresh(cfg, texts: dict[int, str]) -> dict[int, np.ndarray]:
    """From scratch, no cache: what the stage stored before the cache existed (float32 cast to float16)."""
    vectors = encode_module.encode_texts(list(texts.values()), cfg.encode).astype(np.float16)
    return dict(zip(texts, vectors))


def _assert_same(got: dict[int, np.ndarray], want: dict[int, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        # Batch composition can move the last float32 bit; one float16 step at these magnitudes is ~3e-5.
        np.testing.assert_allclose(got[k].astype(np.float32), want[k].astype(np.float32), atol=1e-4, err_msg=k)


def test_new_version_encodes_only_changed_texts(tiny, tmp_path, encoder_spy):
    cfg, v = tiny
    _, first = _encode(cfg, _item_text(cfg, v, tmp_path, TEXTS, "day1"))
    assert (first["texts"], first["encoded"], first["cached"]) == (20, 20, 0)
    assert sorted(encoder_spy[0]) == sorted(TEXTS.values())

    day2 = {**TEXTS, **CHANGED}
    encoder_spy.clear()
    got, second = _encode(cfg, _item_text(cfg, v, tmp_path, day2, "day2"))
    assert (second["texts"], second["encoded"], second["cached"]) == (20, 2, 18)
    assert encoder_spy == [[CHANGED[3], CHANGED[7]]]  # exactly the two changed texts, once each
    _assert_same(got, _fresh(cfg, day2))


def test_same_text_twice_is_encoded_once(tiny, tmp_path, encoder_spy):
    cfg, v = tiny
    twice = {i: TEXTS[1 + i % 4] for i in range(1, 13)}  # 12 rows, 4 distinct texts
    got, stats = _encode(cfg, _item_text(cfg, v, tmp_path, twice, "dup"))
    assert (stats["texts"], stats["distinct"], stats["encoded"], stats["cached"]) == (12, 4, 4, 0)
    assert sum(map(len, encoder_spy)) == 4
    _assert_same(got, _fresh(cfg, twice))


def test_fully_cached_version_loads_no_encoder(tiny, tmp_path, monkeypatch):
    cfg, v = tiny
    day1, _ = _encode(cfg, _item_text(cfg, v, tmp_path, TEXTS, "day1"))

    def no_encoder(*args, **kw):
        raise AssertionError("the encoder was loaded although every text is cached")

    monkeypatch.setattr(encode_module, "_load", no_encoder)
    monkeypatch.setattr(encode_module, "dimension", no_encoder)
    subset = {i: TEXTS[i] for i in range(20, 10, -1)}  # fewer rows, other order: a new version, nothing new to encode
    got, stats = _encode(cfg, _item_text(cfg, v, tmp_path, subset, "subset"))
    assert (stats["texts"], stats["encoded"], stats["cached"], stats["dim"]) == (10, 0, 10, 384)
    assert stats["reused"] == []  # built, not reused: the table version is new
    _assert_same(got, {i: day1[i] for i in subset})


def test_setting_that_shapes_vectors_misses_the_old_cache(tiny, tmp_path, encoder_spy):
    cfg, v = tiny
    v = _item_text(cfg, v, tmp_path, TEXTS, "day1")
    _encode(cfg, v)
    raw_cfg = cfg.model_copy(update={"encode": cfg.encode.model_copy(update={"normalize": False})})
    fast_cfg = cfg.model_copy(update={"encode": cfg.encode.model_copy(update={"batch_size": 7})})
    assert encode_cache.settings_digest(raw_cfg.encode) != encode_cache.settings_digest(cfg.encode)
    assert encode_cache.settings_digest(fast_cfg.encode) == encode_cache.settings_digest(cfg.encode)  # speed only

    encoder_spy.clear()
    # MiniLM's own pipeline ends in a Normalize layer, so its vectors barely change here: what is checked is that
    # the cache is keyed by the setting, which for another model decides the vector.
    _, stats = _encode(raw_cfg, v)
    assert (stats["encoded"], stats["cached"]) == (20, 0) and sum(map(len, encoder_spy)) == 20
    assert len(list((cfg.workdir_path / "encode_cache").iterdir())) == 2  # one directory per vector setting


def test_crash_while_writing_the_cache_leaves_no_half_file(tiny, tmp_path, monkeypatch, encoder_spy):
    cfg, v = tiny
    v = _item_text(cfg, v, tmp_path, TEXTS, "day1")
    root = cfg.workdir_path / "encode_cache"

    def crash_mid_write(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a part")
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(encode_cache.pq, "write_table", crash_mid_write)
        with pytest.raises(OSError, match="disk full"):
            stages.encode(cfg, "item", v)
    assert not [p for p in root.rglob("*") if p.is_file()]
    assert not (cfg.workdir_path / "feature_store" / "item_knowledge_emb").exists()  # nothing published either

    # A run killed outright (no exception to clean up after) can leave the temp file: readers never look at it.
    cache = encode_cache.EncodeCache(root, cfg.encode)
    cache.dir.mkdir(parents=True, exist_ok=True)
    (cache.dir / ".tmp-part-killed.parquet.abc.parquet").write_bytes(b"PAR1 half a part")

    encoder_spy.clear()
    got, stats = _encode(cfg, v)
    assert (stats["encoded"], stats["cached"]) == (20, 0) and sum(map(len, encoder_spy)) == 20
    assert len(cache.parts()) == 1 and cache.dim() == 384
    _assert_same(got, _fresh(cfg, TEXTS))


@pytest.mark.timeout(60)
def test_a_year_of_daily_parts_is_compacted_and_no_vector_is_lost(tmp_path, monkeypatch):
    """No encoder here: vectors are made up and added the way a daily run adds them, one part per run."""
    from configs import EncodeConfig

    cache = encode_cache.EncodeCache(tmp_path / "encode_cache", EncodeConfig())
    rng = np.random.default_rng(0)
    added: dict[str, np.ndarray] = {}
    for day in range(encode_cache.COMPACT_AT + 5):
        keys = [encode_cache.text_key(f"profile of user {u} on day {day}") for u in range(3)]
        keys.append(encode_cache.text_key("a text every day"))  # the same text added again: kept once
        vectors = rng.normal(size=(4, 8)).astype(np.float32)
        vectors[3] = 1.0
        cache.add(keys, vectors)
        added.update(zip(keys, vectors))
        assert len(cache.parts()) <= encode_cache.COMPACT_AT
    found, vectors = cache.lookup(added)
    assert sorted(found) == sorted(added)
    assert all(np.array_equal(v, added[k]) for k, v in zip(found, vectors))
    assert 1 <= len(cache.parts()) <= 6  # folded once past COMPACT_AT, then a few daily parts again

    # a reader whose listing went stale (a compaction deleted what it listed) lists again instead of failing
    stale = cache.parts()
    cache.compact()
    listed = iter([stale, cache.parts()])
    monkeypatch.setattr(cache, "parts", lambda: next(listed))
    found, _ = cache.lookup(list(added)[:5])
    assert len(found) == 5
