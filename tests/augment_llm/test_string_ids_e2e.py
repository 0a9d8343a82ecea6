"""String ids end to end: ingest -> split -> prompts -> generation (a named fake LLM) -> encode (real MiniLM) ->
CTR training (real LightGBM and DeepFM) -> serving, over HTTP, by the ids the source files use."""
from __future__ import annotations

import csv
import hashlib

import pytest
from fastapi.testclient import TestClient

from augment import stages
from configs import load_config
from models.retrain import retrain
from models.serving.app import ServingSettings, create_app

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]  # real MiniLM encoder


@pytest.fixture
def fake(fake_backend):
    """The named fake backend (conftest.FakeBackend) answering a fixed sentence per prompt."""
    from augment.llm.backend import ChatResult

    fake_backend.answer = lambda r: ChatResult("A well known film with a memorable story, strong cast and loyal "
                                               "fans.", prompt_tokens=10, output_tokens=16, finish_reason="stop",
                                               key=r.key)
    return fake_backend


def _user(u: str) -> str:
    return hashlib.md5(u.encode()).hexdigest()  # 9d95d09...-style hashes


def _item(i: str) -> str:
    return f"B{int(i):09d}"  # ASIN-like, with leading zeros that a number would lose


def _rewrite_ids(path, columns: dict[str, callable]) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for col, fn in columns.items():
            row[col] = fn(row[col])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_string_ids_from_ingest_to_serving(tmp_path, make_tiny_config, fake):
    cfg = load_config(make_tiny_config(
        tmp_path, **{"train.backbones": ["lightgbm", "deepfm"], "train.variants": ["base", "llm"],
                     "data.id_types": {"user": "string", "item": "string"}}))
    data = tmp_path / "data"
    _rewrite_ids(data / "ratings.csv", {"user": _user, "movie": _item})
    _rewrite_ids(data / "movies.csv", {"id": _item})
    _rewrite_ids(data / "users.csv", {"uid": _user})

    versions = stages.run_all(cfg)
    assert len(fake.requests) > 0
    store = stages.store_for(cfg)
    item_map = store.read_pandas("item_id_map", versions["item_id_map"])
    assert set(item_map["id_type"]) == {"string"} and _item("3") in set(item_map["source_id"])
    texts = store.read_pandas("item_knowledge_text", versions["item_knowledge_text"])
    assert set(texts["item_id"]) == set(item_map["item_id"])  # every table joins on the keys of the id map

    out = retrain(cfg, versions)
    assert out["promotion"]["promoted"]
    with TestClient(create_app(ServingSettings(cfg.workdir_path, max_candidates=50, poll_seconds=0))) as client:
        r = client.post("/score", json={"user_id": _user("2"), "item_ids": [_item("1"), _item("7"), "B0NOSUCH"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["scores"]) == 3 and all(0.0 < s < 1.0 for s in body["scores"])
        assert body["cold_start"]["user"] is False and body["cold_start"]["unknown_items"] == 1, body
        # the model's ids are strings: an int id is a one-line 422, not a silent cold start
        r = client.post("/score", json={"user_id": 2, "item_ids": [_item("1")]})
        assert r.status_code == 422 and "user_id: expected a string, got int 2" in r.json()["error"], r.text


def test_positives_only_log_with_external_item_text_trains_a_variant(tmp_path, make_tiny_config, fake):
    """A click log (positives only, string ids) plus a catalogue description file: negatives are sampled at split
    time, the file replaces LLM item text (no LLM call for items), and the item-text variant trains on it."""
    data = tmp_path / "data"
    descriptions = tmp_path / "descriptions.csv"
    cfg_path = make_tiny_config(
        tmp_path, **{"data.feedback": "positive_only", "data.id_types": {"user": "string", "item": "string"},
                     "generation.external": {"item": {"path": str(descriptions), "source": "catalogue"}},
                     "split.negatives": {"per_positive": 2, "seed": 3},
                     "train.backbones": ["lightgbm"], "train.variants": ["base", "llm_item"],
                     "data.generic.interactions.columns": {"user_id": "user", "item_id": "movie",
                                                           "timestamp": "ts"}})
    cfg = load_config(cfg_path)
    # the tiny log's well-rated rows become the clicks; ratings are dropped (an implicit log has none)
    with open(data / "ratings.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["stars"]) >= 4]
    with open(data / "ratings.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["user", "movie", "ts"])
        w.writeheader()
        w.writerows({"user": _user(r["user"]), "movie": _item(r["movie"]), "ts": r["ts"]} for r in rows)
    _rewrite_ids(data / "movies.csv", {"id": _item})
    _rewrite_ids(data / "users.csv", {"uid": _user})
    descriptions.write_text("item_id,text\n" + "".join(
        f"{_item(str(i))},\"A {'loud action-packed' if i % 2 else 'quiet, character-driven'} film, number {i}.\"\n"
        for i in range(1, 21)))

    versions = stages.run_all(cfg)
    store = stages.store_for(cfg)
    splits = store.read_pandas("interaction_splits", versions["interaction_splits"])
    assert splits["sampled"].any() and set(splits.loc[splits["sampled"], "label"]) == {0}
    assert set(splits.loc[~splits["sampled"], "label"]) == {1}
    texts = store.read_pandas("item_knowledge_text", versions["item_knowledge_text"])
    assert set(texts["model"]) == {"external:catalogue"} and len(texts) == 20
    user_prompts = len(store.read_pandas("user_prompts", versions["user_prompts"]))
    assert len(fake.requests) == user_prompts  # only user text was generated; items came from the file

    out = retrain(cfg, versions)
    rows = out["results"]  # one dict per model
    assert {r["variant"] for r in rows} == {"base", "llm_item", "raw_text"}, rows  # + llm_item's no-LLM twin
    # both classes in every split, so AUC is defined (a positives-only log without negatives has none)
    samples = splits[splits["role"] == "sample"]
    assert samples.groupby("split")["label"].nunique().eq(2).all()
    assert all(0.0 <= r["test_auc"] <= 1.0 for r in rows), rows  # NaN fails this
