"""Fresh features for the champion (models/feature_refresh.py): a newer table version with the same serving
contract replaces the pinned one without a retrain, hot, in the server's holder and under load; a version made
another way (another encoder) is refused with the field that differs, and the champion keeps its own."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd
import pytest

from feature_store import FeatureStore
from feature_store import definitions as d
from models.feature_refresh import refresh_champion, refresh_pins
from models.registry import load_model, promote
from models.serving import Scorer
from models.serving.hot_swap import ScorerHolder
from models.serving.loadgen import Served, run_load_while, wait_healthy

DIM = 8  # tests/serving/conftest.py
USERS, ITEMS = (1, 7, 30), list(range(1, 101))


def _fresh_profiles(store: FeatureStore, version: str, recipe: dict) -> str:
    """A new user_profile_emb version: the same users, each with another user's vector (a day of new profiles)."""
    old = store.read_pandas("user_profile_emb", version)
    new = old.copy()
    new["emb"] = list(np.roll(np.stack(old["emb"].to_numpy()), 1, axis=0))
    return store.publish(d.user_profile_emb(DIM), new, recipe).version


def _champion(work, model_dirs, key: str = "lightgbm/llm") -> tuple[str, dict]:
    reg = work / "registry" / "ctr"
    rel = str(model_dirs[key].relative_to(model_dirs[key].parents[3]))
    promote(work, "ctr", reg / rel, valid_auc=lambda m: 0.5, margin=0.0, force=True)
    return rel, load_model(reg / rel).feature_tables


@pytest.mark.timeout(120)
def test_the_champion_takes_compatible_fresh_features_and_refuses_others(served_workdir, model_dirs, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(served_workdir, work, symlinks=True)
    rel, trained = _champion(work, model_dirs)
    store = FeatureStore(work / "feature_store")
    holder = ScorerHolder(work, "ctr")
    assert holder.reload()["swapped"]
    before = [holder.current.score(u, ITEMS) for u in USERS]
    assert holder.reload()["swapped"] is False  # nothing changed: no reload

    # the same recipe settings over newer data (only a data pointer differs): compatible
    fresh = _fresh_profiles(store, trained["user_profile_emb"], {"serving-test": 0, "interaction_splits": "day-2"})
    record = refresh_champion(work, "ctr", rel, store, {"user_profile_emb": fresh, "not_pinned": "x"})
    assert record["refreshed"] == {"user_profile_emb": [trained["user_profile_emb"], fresh]}
    assert record["refused"] == {}
    swap = holder.reload()
    assert swap["swapped"] and swap["model"] == rel  # the same model, new features
    assert holder.current.feature_versions["user_profile_emb"] == fresh
    after = [holder.current.score(u, ITEMS) for u in USERS]
    assert not all(np.allclose(a, b) for a, b in zip(before, after))  # the profiles are used
    by_hand = Scorer.from_model_dir(model_dirs["lightgbm/llm"], store, pins={**trained, "user_profile_emb": fresh})
    assert all(np.allclose(a, by_hand.score(u, ITEMS)) for a, u in zip(after, USERS))

    # vectors of another encoder live in another space: refused, named, and the champion serves its own again
    other = _fresh_profiles(store, trained["user_profile_emb"], {"serving-test": 0, "encoder": "another-encoder"})
    record = refresh_champion(work, "ctr", rel, store, {"user_profile_emb": other})
    assert record["refreshed"] == {}
    assert "user_profile_emb@" in record["refused"]["user_profile_emb"]
    assert "settings.encoder" in record["refused"]["user_profile_emb"]
    assert holder.reload()["swapped"]
    assert holder.current.feature_versions["user_profile_emb"] == trained["user_profile_emb"]
    assert all(np.allclose(a, holder.current.score(u, ITEMS)) for a, u in zip(before, USERS))


@pytest.mark.timeout(60)
def test_a_daily_runs_interval_end_is_data_but_its_split_settings_are_not(tmp_path):
    """interaction_splits of two daily runs differ in stream.end only: interchangeable for serving (fresher
    histories); another valid span made the rows another way: refused."""
    store = FeatureStore(tmp_path / "store")
    users = pd.DataFrame({"user_id": [1, 2], "gender": ["F", "M"], "age": [30, 40], "occupation": ["a", "b"],
                          "zip_code": ["1", "2"]})
    stream = {"start": "1998-04-16T00:00:00Z", "interval_hours": 24, "valid_intervals": 3}
    day = {n: store.publish(d.USERS, users, {"stream": {**stream, "end": f"1998-04-{n}T00:00:00Z"}}).version
           for n in (17, 18)}
    other = store.publish(d.USERS, users, {"stream": {**stream, "valid_intervals": 1, "end": "1998-04-18"}}).version
    served, refused = refresh_pins(store, {"users": day[17]}, {"users": day[18]})
    assert served == {"users": day[18]} and refused == {}
    served, refused = refresh_pins(store, {"users": day[17]}, {"users": other})
    assert served == {"users": day[17]} and "settings.stream.valid_intervals (3 -> 1)" in refused["users"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_zero_failures_while_fresh_features_swap_in_under_load(server, model_dirs):
    """The server (a real uvicorn subprocess, 127.0.0.1) answers every request while the champion's profile
    version flips back and forth; each response's scores are those of the versions it names."""
    work, port = server
    rel, trained = _champion(work, model_dirs)
    store = FeatureStore(work / "feature_store")
    fresh = _fresh_profiles(store, trained["user_profile_emb"], {"serving-test": 0, "interaction_splits": "day-2"})
    bodies = [{"user_id": u, "item_ids": ITEMS} for u in USERS]
    expected = {}
    for version in (trained["user_profile_emb"], fresh):
        scorer = Scorer.from_model_dir(model_dirs["lightgbm/llm"], store, pins={**trained, "user_profile_emb": version})
        expected[version] = [scorer.score(b["user_id"], b["item_ids"]) for b in bodies]
    served = Served()

    def check(i: int, data: dict) -> str | None:
        version = data["feature_tables"]["user_profile_emb"]
        served.add(version)
        if data["model"]["model_path"] != rel:
            return f"served {data['model']['model_path']}, expected the champion {rel}"
        if not np.allclose(data["scores"], expected[version][i], rtol=1e-5, atol=1e-7):
            return f"scores differ from the champion with user_profile_emb@{version} on body {i}"
        return None

    flips, problems = [], []

    def flipper() -> None:
        for version in (fresh, trained["user_profile_emb"], fresh):
            before = served[version]
            refresh_champion(work, "ctr", rel, store, {"user_profile_emb": version})
            if not served.wait(version, before + 30):
                problems.append(f"user_profile_emb@{version} never served")
                return
            flips.append(version)

    deadline = time.monotonic() + 60
    while wait_healthy(port)["model"]["model_path"] != rel:  # the champion promoted above is serving
        assert time.monotonic() < deadline, "the server never swapped to the promoted champion"
        time.sleep(0.2)
    stats = run_load_while(port, bodies, flipper, total=50_000, concurrency=3, max_seconds=120, check=check)
    print(stats.summary())
    assert (problems, stats.errors) == ([], 0), (problems, stats.summary()["first_errors"])
    assert flips == [fresh, trained["user_profile_emb"], fresh]
