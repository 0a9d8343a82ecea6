"""Scorer: same probabilities as ScoringModel.predict on the training feature path, cold start, context."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.serving import Scorer
from models.serving.scorer import ScoreResult

MODELS = ["lightgbm/llm", "deepfm/llm_kar", "din/llm", "lightgbm/base"]


@pytest.fixture(scope="module")
def scorers(served_workdir, model_dirs) -> dict[str, Scorer]:
    return {k: Scorer.from_model_dir(model_dirs[k], served_workdir / "feature_store") for k in MODELS}


@pytest.fixture(scope="module")
def built(served_workdir, scorers):
    """train/valid splits as build_ctr_dataset builds them for training, with the same pinned versions (train
    users are in the id vocabularies; valid users are not: splits are by user)."""
    from feature_store import FeatureStore
    from models.dataset_builder import build_ctr_dataset
    from models.feature_spec import spec_entries

    model = scorers["din/llm"].model
    entries = [e for e in spec_entries(model.feature_map) if e.type != "vector"]
    entries += [e for e in spec_entries(scorers["deepfm/llm_kar"].model.feature_map) if e.type == "vector"]
    entries += [e for e in spec_entries(scorers["lightgbm/llm"].model.feature_map)
                if e.type == "vector" and e.name not in {x.name for x in entries}]
    return build_ctr_dataset(FeatureStore(served_workdir / "feature_store"), model.feature_tables, entries,
                             history_len=5).data


def _latest_history(workdir, pins, users, maxlen):
    """Independent of models/history.py: each user's last items over all interaction_splits rows."""
    from feature_store import FeatureStore

    ev = FeatureStore(workdir / "feature_store").read_pandas("interaction_splits", pins["interaction_splits"])
    ev = ev.sort_values(["user_id", "timestamp"], kind="stable")
    tails = ev.groupby("user_id")["item_id"].apply(lambda s: list(s)[-maxlen:])
    hist = np.zeros((len(users), maxlen), dtype=np.int64)
    lens = np.zeros(len(users), dtype=np.int64)
    for r, u in enumerate(users):
        t = tails.get(u, [])
        hist[r, :len(t)], lens[r] = t, len(t)
    return hist, lens


@pytest.mark.parametrize("split", ["train", "valid"])
@pytest.mark.parametrize("key", MODELS)
def test_matches_training_features(key, split, scorers, built, served_workdir):
    scorer = scorers[key]
    valid_rows = getattr(built, split)
    frame = valid_rows.frame
    for user in frame["user_id"].unique()[:4]:
        mask = (frame["user_id"] == user).to_numpy()
        rows = frame[mask].reset_index(drop=True)
        vectors = {g: v[mask] for g, v in valid_rows.vectors.items()}
        hist = lens = None
        if scorer.model.needs_history:  # serving uses the history as of now, training the one before each label
            hist, lens = _latest_history(served_workdir, scorer.model.feature_tables, rows["user_id"], 5)
        expected = scorer.model.predict(rows, vectors, history=hist, history_len=lens)
        got = scorer.score(int(user), rows["item_id"].to_numpy())
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=f"{key} user {user}")


@pytest.mark.parametrize("key", MODELS)
def test_cold_start_scores_and_counts(key, scorers):
    scorer = scorers[key]
    before = scorer.cold_start.unknown_items
    known = scorer.compiled.item_keys[:3]
    ids = np.concatenate([known, [10**9, 10**9 + 7, -5]])
    r: ScoreResult = scorer.score_detailed(10**12, ids)
    assert r.probabilities.shape == (6,) and np.all((r.probabilities > 0) & (r.probabilities < 1))
    assert not r.user_known and r.unknown_items == 3 and r.defaults["items"] == 3 and r.defaults["users"] == 1
    # every unknown item takes the same defaults (float32 batch position noise aside)
    np.testing.assert_allclose(r.probabilities[3:], r.probabilities[3], rtol=1e-6)
    assert scorer.cold_start.unknown_items == before + 3


def test_unknown_item_equals_model_on_missing_features(scorers):
    """An unknown (user, item) scores as the model scores a row whose features are all missing."""
    scorer = scorers["lightgbm/llm"]
    frame = pd.DataFrame({c: [None] for c in [*scorer.snapshot.users.columns, *scorer.snapshot.items.columns]})
    frame["user_id"], frame["item_id"] = 10**12, 10**9
    for c in scorer.snapshot.items.columns:
        if c.startswith("genre_") or c == "year":
            frame[c] = np.nan
    vectors = {g: np.zeros((1, 8), dtype=np.float32) for g in scorer.model.required_groups}
    np.testing.assert_allclose(scorer.score(10**12, [10**9]), scorer.model.predict(frame, vectors), rtol=1e-6)


def test_vector_gaps_take_the_default_and_are_counted(scorers, vector_gaps):
    r = scorers["deepfm/llm_kar"].score_detailed(vector_gaps["users"][0], [1, *vector_gaps["items"]])
    assert r.user_known and r.unknown_items == 0
    assert r.defaults["item_knowledge_emb"] == 2 and r.defaults["user_profile_emb"] == 1


@pytest.mark.parametrize("key", ["lightgbm/llm", "din/llm"])
def test_context_slow_path_agrees_with_fast_path(key, scorers):
    scorer = scorers[key]
    users = scorer.snapshot.users
    row = users.iloc[5]
    items = scorer.compiled.item_keys[:20]
    fast = scorer.score(int(row.user_id), items)
    ctx = {"gender": row.gender, "occupation": row.occupation}
    if scorer.model.needs_history:
        hist, lens = scorer.snapshot.latest_history(np.asarray([row.user_id]), 5)
        ctx["history"] = hist[0, :lens[0]].tolist()
    np.testing.assert_allclose(scorer.score(int(row.user_id), items, context=ctx), fast, rtol=1e-6)
    other = "M" if row.gender == "F" else "F"
    changed = scorer.score(int(row.user_id), items, context={"gender": other, "age": 80})
    # the same user with gender and age bucket replaced, scored by the model on a hand-built frame
    snap = scorer.snapshot
    frame = snap.scalars("item_id", np.asarray(items))
    user = snap.scalars("user_id", np.asarray([row.user_id]))
    for c in user.columns:
        frame[c] = user[c].iloc[0]
    frame["gender"], frame["age_bucket"] = other, "56+"
    vectors = {}
    for g in scorer.model.required_groups:
        if snap.vector_entry(g).key == "item_id":
            vectors[g] = snap.vectors("item_id", np.asarray(items), [g])[g]
        else:
            vectors[g] = np.repeat(snap.vectors("user_id", np.asarray([row.user_id]), [g])[g], len(items), axis=0)
    hist = lens = None
    if scorer.model.needs_history:
        hist, lens = snap.latest_history(np.full(len(items), row.user_id), 5)
    expected = scorer.model.predict(frame, vectors, history=hist, history_len=lens)
    np.testing.assert_allclose(changed, expected, rtol=1e-5, atol=1e-6)


def test_context_for_a_cold_start_user(scorers):
    scorer = scorers["din/llm"]
    plain = scorer.score(10**12, [1, 2, 3])
    with_history = scorer.score(10**12, [1, 2, 3], context={"history": [4, 5, 6, 7, 8, 9], "gender": "F"})
    assert not np.allclose(plain, with_history)


@pytest.mark.parametrize("args, match", [
    (("7", [1]), "user_id: expected an integer"),
    ((True, [1]), "user_id: expected an integer"),
    ((1, [1.5, 2.0]), "item_ids.0: expected an integer id, got float 1.5"),
    ((1, [[1, 2]]), "item_ids: expected a flat list"),
    ((1, [1], {"favourite": "x"}), "context key 'favourite' not understood"),
    ((1, [1], {"age": "old"}), "context\\['age'\\]"),
    ((1, [1], {"history": ["a"]}), "context\\['history'\\]"),
])
def test_bad_arguments_raise_clear_errors(scorers, args, match):
    with pytest.raises(ValueError, match=match):
        scorers["din/llm"].score(*args)


def test_empty_candidates(scorers):
    assert scorers["deepfm/llm_kar"].score(1, []).shape == (0,)


def test_from_registry_serves_the_champion(served_workdir):
    from models.registry import champion_info

    scorer = Scorer.from_registry(served_workdir, "ctr")
    assert scorer.model_version == champion_info(served_workdir, "ctr")["model_path"]
    assert set(scorer.describe()["feature_tables"]) >= {"users", "items"}
