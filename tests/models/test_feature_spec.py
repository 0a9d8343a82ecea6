"""The feature spec (cfg.train.features) is the one place a feature is declared: the structured tables train,
save, reload and serve as a variant; an extra config entry reaches the feature map and the scorer with no code
change; the dataset builder reads only the exact versions it is handed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from configs import RunConfig
from feature_store import FeatureStore
from models.dataset_builder import build_ctr_dataset
from models.feature_spec import spec_entries, tables_needed
from models.retrain import latest_versions, retrain
from models.serving import Scorer

FAST = dict(seeds=(0,), threads=1, deepfm_epochs=2, deepfm_batch_size=256, deepfm_lr=5e-3, embedding_dim=4,
            lgbm_rounds=30, lgbm_early_stopping=10, vector_reduce={"dim": 3}, kar_hidden=8, kar_out_dim=4, history_len=5)


def _cfg(work, **train) -> RunConfig:
    return RunConfig.model_validate({"workdir": str(work), "train": {**FAST, **train}})


def _assert_serving_parity(model_dir, work, n_users: int = 3) -> Scorer:
    """The scorer (compiled rows from the pinned tables) gives the model's own scores on the training path."""
    scorer = Scorer.from_model_dir(model_dir, work / "feature_store")
    model = scorer.model
    built = build_ctr_dataset(FeatureStore(work / "feature_store"), model.feature_tables,
                              spec_entries(model.feature_map), history_len=5)
    train = built.data.train
    for user in train.frame["user_id"].unique()[:n_users]:
        mask = (train.frame["user_id"] == user).to_numpy()
        rows = train.frame[mask].reset_index(drop=True)
        expected = model.predict(rows, {g: v[mask] for g, v in train.vectors.items()})
        np.testing.assert_allclose(scorer.score(int(user), rows["item_id"].to_numpy()), expected,
                                   rtol=1e-5, atol=1e-6, err_msg=f"{model_dir} user {user}")
    return scorer


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_structured_variant_trains_saves_and_serves(structured_workdir):
    work = structured_workdir
    cfg = _cfg(work, backbones=("lightgbm", "deepfm"), variants=("base", "structured"))
    versions = latest_versions(FeatureStore(work / "feature_store"), cfg)
    assert {"item_tags", "user_interest"} <= set(versions)
    out = retrain(cfg, versions, promote_best=False)
    assert {(r["backbone"], r["variant"]) for r in out["results"]} == {
        ("lightgbm", "base"), ("lightgbm", "structured"), ("deepfm", "base"), ("deepfm", "structured")}
    run = work / "registry" / "ctr" / out["run_id"]
    for backbone in ("lightgbm", "deepfm"):
        fmap = json.loads((run / backbone / "structured" / "seed=0" / "feature_map.json").read_text())
        names = {f["name"] for f in fmap["features"]}
        assert {"item_category", "item_topics", "user_top_topic", "user_topics"} <= names
        assert {"item_category", "user_top_topic"} <= set(fmap["categorical"])
        assert [g["name"] for g in fmap["vector_groups"]] == ["item_topics", "user_topics"]
        base = json.loads((run / backbone / "base" / "seed=0" / "feature_map.json").read_text())
        assert not {"item_category", "item_topics", "user_top_topic", "user_topics"} & {f["name"] for f in
                                                                                    base["features"]}
        scorer = _assert_serving_parity(run / backbone / "structured" / "seed=0", work)
        # an item without tags and a user without interests take the table defaults and are counted
        missing_item = int(np.setdiff1d(np.arange(1, 401), FeatureStore(work / "feature_store").read_pandas(
            "item_tags", versions["item_tags"])["item_id"])[0])
        r = scorer.score_detailed(1, [missing_item])
        assert r.defaults["item_tags"] == 1 and np.isfinite(r.probabilities).all()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_one_config_entry_adds_a_feature_end_to_end(planted_workdir, tmp_path):
    """No code change: a numeric `user_age` entry in train.features reaches the dataset, the saved feature map
    and the scorer."""
    import shutil

    work = tmp_path / "w"
    shutil.copytree(planted_workdir / "feature_store", work / "feature_store", symlinks=True)
    extra = {"name": "user_age", "type": "numeric", "source": "users", "key": "user_id", "column": "age"}
    cfg = _cfg(work, backbones=("lightgbm", "deepfm"), variants=("base",), add_features=[extra])
    assert [f.name for f in cfg.train.features] == [f.name for f in RunConfig().train.features] + ["user_age"]
    out = retrain(cfg, latest_versions(FeatureStore(work / "feature_store"), cfg), promote_best=False)
    for backbone in ("lightgbm", "deepfm"):
        model_dir = work / "registry" / "ctr" / out["run_id"] / backbone / "base" / "seed=0"
        fmap = json.loads((model_dir / "feature_map.json").read_text())
        assert "user_age" in fmap["numeric"]
        assert next(f for f in fmap["features"] if f["name"] == "user_age")["key"] == "user_id"
        scorer = _assert_serving_parity(model_dir, work)
        # the new column is on the user's side of the compiled rows
        user_cols = set(scorer.compiled.user_cols.tolist())
        layout = scorer.model.inner.input_layout()
        start = sum(w for _, w in layout[:[n for n, _ in layout].index("user_age")])
        assert start in user_cols


def test_builder_needs_an_exact_version_for_every_table(planted_workdir):
    store = FeatureStore(planted_workdir / "feature_store")
    versions = {t: store.resolve(t) for t in tables_needed(RunConfig().train)}
    without = {k: v for k, v in versions.items() if k != "user_profile_emb"}
    with pytest.raises(ValueError, match=r"no version given for table\(s\) \['user_profile_emb'\]"):
        build_ctr_dataset(store, without)
    with pytest.raises(ValueError, match=r"\['users'\]: 'latest' is not an exact version"):
        build_ctr_dataset(store, {**versions, "users": "latest"})


def test_retrain_needs_versions_for_the_structured_tables(structured_workdir):
    cfg = _cfg(structured_workdir, backbones=("lightgbm",), variants=("structured",))
    store = FeatureStore(structured_workdir / "feature_store")
    plain = {t: store.resolve(t) for t in tables_needed(RunConfig().train)}  # no item_tags / user_interest
    with pytest.raises(ValueError, match=r"item_tags"):
        retrain(cfg, plain, promote_best=False)


def test_spec_is_validated():
    with pytest.raises(ValueError, match="duplicate"):
        _cfg("/tmp", features=[{"name": "a", "type": "numeric", "source": "users", "key": "user_id", "column": "age"}] * 2)
    with pytest.raises(ValueError, match="transform 'age_bucket' does not apply"):
        _cfg("/tmp", features=[{"name": "a", "type": "numeric", "source": "users", "key": "user_id", "column": "age",
                                "transform": "age_bucket"}])
    with pytest.raises(ValueError, match="extra|Extra"):
        _cfg("/tmp", lightgbm={"num_leaves": 7, "nonsense": 1})
    with pytest.raises(ValueError, match="name no train.features entry"):
        _cfg("/tmp", variants=("x",), variant_defs={"x": {"groups": ["nope"]}})


def test_cli_version_flags_pin_tables_and_the_rest_take_latest(planted_workdir):
    from models.__main__ import _pins, _versions

    store = FeatureStore(planted_workdir / "feature_store")
    cfg = _cfg(planted_workdir)
    latest = {t: store.resolve(t) for t in tables_needed(cfg.train)}
    assert _versions(cfg, store, []) == latest
    assert _versions(cfg, store, ["users=v-pinned"]) == {**latest, "users": "v-pinned"}
    with pytest.raises(SystemExit, match="TABLE=VERSION"):
        _pins(["users"])
