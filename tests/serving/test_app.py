"""HTTP service in-process (FastAPI TestClient): /score, /healthz, /metrics, 4xx messages, reload and swap."""
from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from models.registry import champion_info, promote
from models.serving.app import ServingSettings, create_app


def _client(workdir, **kw) -> TestClient:
    return TestClient(create_app(ServingSettings(workdir, max_candidates=kw.pop("max_candidates", 50),
                                                 poll_seconds=kw.pop("poll_seconds", 0))))


def _force_promote(workdir, model_dir):
    return promote(workdir, "ctr", model_dir, valid_auc=lambda m: 0.5, margin=0.0, force=True)


@pytest.fixture()
def workdir(served_workdir, tmp_path):
    """A private copy: these tests move the champion pointer."""
    dst = tmp_path / "w"
    shutil.copytree(served_workdir, dst, symlinks=True)
    return dst


def test_score_healthz_metrics(workdir):
    with _client(workdir) as client:
        champ = champion_info(workdir, "ctr")["model_path"]
        r = client.post("/score", json={"user_id": 3, "item_ids": [1, 2, 3, 10**9]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["scores"]) == 4 and all(0 < s < 1 for s in body["scores"])
        assert body["model"]["model_path"] == champ and body["feature_tables"]["users"]
        assert body["cold_start"] == {"user": False, "unknown_items": 1}
        r = client.post("/score", json={"user_id": 10**9, "item_ids": [1], "context": {"gender": "F", "age": 30}})
        assert r.status_code == 200 and r.json()["cold_start"]["user"] is True
        h = client.get("/healthz")
        assert h.status_code == 200 and h.json()["model"]["model_path"] == champ
        m = client.get("/metrics")
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
        text = m.text
        assert "serving_unknown_users_total 1.0" in text and "serving_unknown_items_total 1.0" in text
        assert 'serving_requests_total{code="200",endpoint="/score"} 2.0' in text
        assert f'model_path="{champ}"' in text and "serving_score_seconds_bucket" in text
        assert 'serving_feature_table_info{table="users"' in text


@pytest.mark.parametrize("payload, fragment", [
    ({"item_ids": [1]}, "body.user_id: Field required"),
    ({"user_id": "7", "item_ids": [1]}, "user_id: expected an integer, got str '7'"),
    ({"user_id": 7, "item_ids": "1,2"}, "body.item_ids: Input should be a valid list"),
    ({"user_id": 7, "item_ids": [1, "x"]}, "item_ids.1: expected an integer id, got str 'x'"),
    ({"user_id": 7, "item_ids": [1.5]}, "body.item_ids.0"),
    ({"user_id": 7, "item_ids": [1], "extra": 1}, "body.extra: Extra inputs are not permitted"),
    ({"user_id": 7, "item_ids": list(range(51))}, "item_ids: 51 candidates, max_candidates is 50"),
    ({"user_id": 7, "item_ids": []}, "item_ids: empty list"),
    ({"user_id": 7, "item_ids": [1], "context": {"shoe_size": 9}}, "context key 'shoe_size' not understood"),
    ({"user_id": 7, "item_ids": [1], "context": {"age": "old"}}, "context['age'] = 'old': expected a number"),
])
def test_bad_requests_get_422_with_one_line(workdir, payload, fragment):
    with _client(workdir) as client:
        r = client.post("/score", json=payload)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert fragment in err and "\n" not in err, err
        assert 'serving_requests_total{code="422",endpoint="/score"} 1.0' in client.get("/metrics").text


def test_malformed_json_is_422(workdir):
    with _client(workdir) as client:
        r = client.post("/score", content=b'{"user_id": 1,', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["error"]


def test_no_champion_gives_503_until_promoted(workdir, model_dirs):
    (workdir / "registry" / "ctr" / "champion.json").unlink()
    with _client(workdir) as client:
        assert client.get("/healthz").status_code == 503
        r = client.post("/score", json={"user_id": 1, "item_ids": [1]})
        assert r.status_code == 503 and "no champion" in r.json()["error"]
        run = model_dirs["din/llm"].relative_to(model_dirs["din/llm"].parents[3])
        _force_promote(workdir, workdir / "registry" / "ctr" / run)
        assert client.post("/admin/reload").json()["swapped"] is True
        assert client.post("/score", json={"user_id": 1, "item_ids": [1]}).json()["model"]["model_path"] == str(run)


def test_reload_swaps_and_a_broken_champion_keeps_the_old_model(workdir, model_dirs):
    reg = workdir / "registry" / "ctr"
    rel = {k: v.relative_to(v.parents[3]) for k, v in model_dirs.items()}
    with _client(workdir) as client:
        first = client.get("/healthz").json()["model"]["model_path"]
        target = next(str(r) for k, r in rel.items() if str(r) != first and k != "lightgbm/base")
        _force_promote(workdir, reg / target)
        out = client.post("/admin/reload").json()
        assert out["swapped"] is True and out["model"] == target and out["previous"] == first
        assert client.post("/admin/reload").json()["reason"] == "already serving the champion"
        assert client.post("/score", json={"user_id": 1, "item_ids": [1]}).json()["model"]["model_path"] == target
        # a champion whose weights are broken: the load fails, the old model keeps serving, the failure is counted
        broken = reg / rel["lightgbm/base"]
        (broken / "model.txt").write_text("not a model")
        (reg / "champion.json").write_text(json.dumps({"model_path": str(rel["lightgbm/base"])}))
        out = client.post("/admin/reload").json()
        assert out["swapped"] is False and "load failed" in out["reason"]
        r = client.post("/score", json={"user_id": 1, "item_ids": [1]})
        assert r.status_code == 200 and r.json()["model"]["model_path"] == target
        assert "serving_model_load_failures_total 1.0" in client.get("/metrics").text
        assert client.get("/healthz").json()["last_reload_error"]
