"""Registry and promotion gate: challenger replaces the champion only if valid AUC beats it by the margin on the
same valid rows; failed gate keeps the champion; every decision is logged; load_champion scores a frame."""
import json

import numpy as np
import pytest

from models.feature_spec import Variant
from models.registry import champion_info, list_models, load_champion, load_model, promote, write_model_manifest
from models.train_deepctr import train_deepctr
from models.train_lightgbm import train_lightgbm


@pytest.fixture(scope="module")
def registry(kar_data, fast_cfg, tmp_path_factory):
    """Three registered models of clearly different quality: base < raw_text-ish < llm."""
    root = tmp_path_factory.mktemp("reg")
    dirs = {}
    fits = {"weak": train_lightgbm(kar_data, Variant(), fast_cfg, 0),
            "strong": train_deepctr(kar_data, Variant(adaptor_groups=("item_knowledge_emb", "user_profile_emb")),
                                    fast_cfg, 0, "din")}
    for tag, fit in fits.items():
        d = root / "registry" / "ctr" / "run1" / fit.model.feature_map["backbone"] / tag / "seed=0"
        fit.model.save(d)
        write_model_manifest(d, {"run_id": "run1", "backbone": fit.model.feature_map["backbone"], "variant": tag,
                                 "seed": 0, "feature_tables": {"items": "v1"}, "metrics": {}})
        dirs[tag] = d
    (root / "feature_store").mkdir()
    return root, dirs


def _scorer(data):
    from models.metrics import auc

    calls = []

    def score(model):
        calls.append(model.model_dir.name)
        return auc(data.valid.frame["label"].to_numpy(), model.predict_split(data.valid))
    score.calls = calls
    return score


def test_gate_sequence(registry, kar_data):
    root, dirs = registry
    score = _scorer(kar_data)
    first = promote(root, "ctr", dirs["weak"], score, margin=0.001)
    assert first["promoted"] and first["reason"] == "no champion yet"
    assert champion_info(root, "ctr")["variant"] == "weak"

    again = promote(root, "ctr", dirs["weak"], score, margin=0.001)
    assert not again["promoted"] and "already the champion" in again["reason"]

    # a huge margin: the better model still fails the gate and the champion stays
    kept = promote(root, "ctr", dirs["strong"], score, margin=0.9)
    assert not kept["promoted"] and kept["delta"] > 0.1 and "<= margin 0.9" in kept["reason"]
    assert champion_info(root, "ctr")["variant"] == "weak"

    won = promote(root, "ctr", dirs["strong"], score, margin=0.001)
    assert won["promoted"] and won["champion"]["valid_auc"] < won["challenger"]["valid_auc"]
    assert champion_info(root, "ctr")["variant"] == "strong"

    lost = promote(root, "ctr", dirs["weak"], score, margin=0.0)
    assert not lost["promoted"] and champion_info(root, "ctr")["variant"] == "strong"

    lines = (root / "registry" / "ctr" / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(x)["promoted"] for x in lines] == [True, False, False, True, False]


def test_interval_rules_decide_on_the_paired_interval(registry, kar_data):
    """superiority promotes only when the whole interval clears the margin; non-inferiority unless the challenger is
    worse by more than the margin with 95% confidence; the decision names its rule and interval."""
    from models.metrics import paired_auc_diff

    root, dirs = registry
    y = kar_data.valid.frame["label"].to_numpy()

    def paired(challenger, champion):
        return paired_auc_diff(y, challenger.predict_split(kar_data.valid), champion.predict_split(kar_data.valid))

    score = _scorer(kar_data)
    promote(root, "ctr", dirs["weak"], score, margin=0.0, force=True)  # whatever earlier tests left: weak serves
    assert champion_info(root, "ctr")["variant"] == "weak"
    sup = promote(root, "ctr", dirs["strong"], score, margin=0.001, rule="superiority", paired=paired)
    assert sup["rule"] == "superiority" and sup["delta_low"] > 0.001 and sup["promoted"]
    assert "(rule: superiority, margin 0.001)" in sup["reason"]
    # the weak model is clearly worse: non-inferiority at a small margin keeps the champion ...
    ni = promote(root, "ctr", dirs["weak"], score, margin=0.01, rule="non_inferiority", paired=paired)
    assert not ni["promoted"] and ni["delta_high"] < 0 and "low end <= -0.01" in ni["reason"]
    # ... and at a margin wider than the whole loss it serves the challenger
    wide = promote(root, "ctr", dirs["weak"], score, margin=0.99, rule="non_inferiority", paired=paired)
    assert wide["promoted"] and champion_info(root, "ctr")["variant"] == "weak"
    with pytest.raises(ValueError, match="needs the paired interval"):
        promote(root, "ctr", dirs["strong"], score, margin=0.0, rule="superiority")
    promote(root, "ctr", dirs["strong"], score, margin=0.0, force=True)  # the later tests expect strong to serve


def test_load_champion_predicts_from_frame_and_vectors(registry, kar_data):
    root, dirs = registry
    model, manifest = load_champion(root, "ctr")
    assert manifest["variant"] == "strong" and model.needs_history
    assert model.required_groups == ["item_knowledge_emb", "user_profile_emb"]
    t = kar_data.test
    vectors = {g: t.vectors[g] for g in model.required_groups}
    pred = model.predict(t.frame, vectors, t.history, t.history_len)
    assert np.array_equal(pred, load_model(dirs["strong"]).predict_split(t))
    with pytest.raises(ValueError, match="needs vector group"):
        model.predict(t.frame, {}, t.history, t.history_len)
    with pytest.raises(ValueError, match=r"needs frame column\(s\) \['item_id'\]"):
        model.predict(t.frame.drop(columns=["item_id"]), vectors, t.history, t.history_len)
    with pytest.raises(ValueError, match="needs history"):
        model.predict(t.frame, vectors)


def test_unscorable_champion_is_kept_unless_forced(registry, kar_data, tmp_path):
    root, dirs = registry
    score = _scorer(kar_data)

    def picky(model):
        if model.manifest["variant"] == "strong":
            raise KeyError("item_knowledge_emb v9 gone")
        return score(model)
    kept = promote(root, "ctr", dirs["weak"], picky, margin=0.0)
    assert not kept["promoted"] and "could not be scored" in kept["reason"]
    forced = promote(root, "ctr", dirs["weak"], picky, margin=0.0, force=True)
    assert forced["promoted"] and champion_info(root, "ctr")["variant"] == "weak"


def test_list_models_and_no_champion(registry, tmp_path):
    root, _ = registry
    table = list_models(root)
    assert set(table["variant"]) == {"weak", "strong"} and table["champion"].sum() == 1
    with pytest.raises(FileNotFoundError, match="no champion"):
        load_champion(tmp_path, "ctr")


def test_challenger_outside_registry_is_rejected(registry, kar_data, tmp_path):
    root, _ = registry
    with pytest.raises(ValueError, match="not inside registry"):
        promote(root, "ctr", tmp_path, _scorer(kar_data), margin=0.0)
