"""report.md starts with the like-for-like verdict (which LLM-derived variants beat their no-LLM twin AND the best
no-LLM variant with the 95% interval above 0; a lift that comes from taste alone is "no LLM lift"), shows every backbone x variant, the paired differences with a t and a user-bootstrap interval, training-seed
and generation-run variance, renders stats or n/a; report.png is a PNG."""
import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_1samp
from sklearn.metrics import roc_auc_score

from models.__main__ import main
from models.report import (
    judge,
    pair_counts,
    paired_differences,
    render_markdown,
    t_interval,
    user_bootstrap,
    write_report,
)

pytestmark = pytest.mark.timeout(60)

STATS = {
    "rows": {"interactions": 100_000, "ctr_train": 60_000},
    "generation": {"item": {"prompts": 1682, "prompts_per_s": 3.2, "output_tokens": 150_000,
                            "output_tokens_per_s": 250.0}},
    "stages": {"generate_items": 520.0, "encode": 40.0, "train": 95.5},
    "peak_rss_mb": 3100.0,
    "feature_tables": {"item_knowledge_emb": "v3"},
    "config_digest": "abc123",
}
GEN_VARIANCE = {"kind": "item", "sample": 60, "seeds": [0, 1, 2], "temperature": 0.7, "identical_fraction": 0.12,
                "mean_pairwise_cosine": 0.912, "min_pairwise_cosine": 0.62, "between_item_cosine": 0.35,
                "seconds": 41.0}


def _results(llm_delta: float, seeds=(0, 1), kar_delta: float | None = None, jitter: float = 0.0) -> pd.DataFrame:
    """test AUC = arm + 0.002 * seed (+ jitter on llm's odd seeds): per-seed differences are exact."""
    rows = []
    for backbone in ("lightgbm", "deepfm"):
        arms = [("base", 0.70), ("raw_text", 0.71), ("llm", 0.70 + llm_delta)]
        if kar_delta is not None and backbone == "deepfm":
            arms.append(("llm_kar", 0.70 + kar_delta))
        for variant, arm_auc in arms:
            for s in seeds:
                noise = jitter * (s % 2) if variant == "llm" else 0.0
                rows.append({"backbone": backbone, "variant": variant, "seed": s, "groups": "",
                             "valid_auc": arm_auc, "valid_logloss": 0.6, "valid_gauc": 0.65,
                             "test_auc": arm_auc + 0.002 * s + noise, "test_logloss": 0.6, "test_gauc": 0.64,
                             "best_iteration": 3, "train_seconds": 1.0})
    return pd.DataFrame(rows)


def _rows(n_users: int = 40, per_user: int = 25, seed: int = 0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users) * 7 + 3, per_user)  # ids need not be 0..n-1
    y = (rng.random(len(users)) < 0.4).astype(np.int8)
    return users, y, rng


def _predictions(strength: dict[str, float], seeds=(0, 1, 2)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test predictions (and the matching results) where each variant's score is y * strength + noise."""
    users, y, rng = _rows()
    preds, results = [], []
    for variant, k in strength.items():
        for s in seeds:
            p = (1 / (1 + np.exp(-(k * y + rng.normal(size=len(y)))))).astype(np.float32)
            preds.append(pd.DataFrame({"backbone": "deepfm", "variant": variant, "seed": s, "row": np.arange(len(y)),
                                       "user_id": users, "label": y, "p": p}))
            results.append({"backbone": "deepfm", "variant": variant, "seed": s, "valid_auc": 0.7,
                            "valid_logloss": 0.6, "valid_gauc": 0.6, "test_auc": roc_auc_score(y, p),
                            "test_logloss": 0.6, "test_gauc": 0.6})
    return pd.concat(preds, ignore_index=True), pd.DataFrame(results)


def test_t_interval_is_scipys_paired_t():
    d = np.array([0.01, 0.02, 0.03, 0.015, 0.025])
    lo, hi = t_interval(d)
    ref = ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    assert np.isnan(t_interval(np.array([0.01]))[0])  # one seed: no interval
    assert t_interval(np.full(3, 0.01)) == pytest.approx((0.01, 0.01))  # identical differences: no spread


def test_pair_counts_give_the_auc_of_any_user_resample():
    users, y, rng = _rows()
    p = np.round(rng.random(len(y)), 2)  # ties count half, as in sklearn
    codes, uniq = pd.factorize(users)
    a = pair_counts(y, p, codes, len(uniq))
    pos = np.bincount(codes, weights=y)
    neg = np.bincount(codes) - pos
    assert a.sum() / (pos.sum() * neg.sum()) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    c = rng.multinomial(len(uniq), np.full(len(uniq), 1 / len(uniq)))
    rows = np.concatenate([np.tile(np.flatnonzero(codes == u), k) for u, k in enumerate(c)])
    assert c @ a @ c / ((c @ pos) * (c @ neg)) == pytest.approx(roc_auc_score(y[rows], p[rows]), abs=1e-12)


def test_user_bootstrap_clear_winner_and_identical_predictions():
    preds, _ = _predictions({"base": 0.3, "llm": 2.0})
    interval = user_bootstrap(preds[preds.backbone == "deepfm"])
    lo, hi = interval("llm", "base", [0, 1, 2], 0.95)
    assert 0 < lo < hi and judge(lo, hi) == "beats"
    assert judge(*interval("base", "llm", [0, 1, 2], 0.95)) == "worse"
    same = preds[preds.variant == "base"].assign(variant="copy")
    twin = user_bootstrap(pd.concat([preds, same]))
    assert twin("copy", "base", [0, 1, 2], 0.95) == pytest.approx((0.0, 0.0))  # degenerate, around 0
    assert judge(*twin("copy", "base", [0, 1, 2], 0.95)) == "within noise"


def test_paired_differences_and_verdict_from_the_bootstrap():
    preds, results = _predictions({"base": 0.5, "raw_text": 0.5, "llm": 2.0, "llm_weak": 0.5})
    started = time.perf_counter()
    diffs = paired_differences(results, preds).set_index(["variant", "ref"])
    assert time.perf_counter() - started < 5
    assert list(diffs.index) == [("raw_text", "base"), ("llm", "base"), ("llm", "raw_text"),
                                 ("llm_weak", "base"), ("llm_weak", "raw_text")]  # controls vs base only
    assert (diffs["by"] == "users bootstrap").all()
    assert diffs.loc[("llm", "base"), "verdict"] == "beats" and diffs.loc[("llm_weak", "base"), "verdict"] != "beats"
    # the bootstrap's full-sample difference is the seed-averaged AUC difference the delta column reports
    row = diffs.loc[("llm", "raw_text")]
    assert row.boot_low < row.delta < row.boot_high and row.t_low < row.delta < row.t_high
    text = render_markdown(results, {}, png_name=None, predictions=preds)
    first = text.splitlines()[0]
    assert first.startswith("**Verdict: LLM lift beyond noise — deepfm: llm +"), first
    assert first.split("**")[1].endswith("] over base"), first  # valid AUCs tie: base is the best control
    assert "llm_weak" not in first.split("**")[1] and "users bootstrap], paired" in first and "3 seed(s)" in first
    assert "| deepfm | llm | raw_text | twin | +" in text and "| beats |" in text
    assert "Caveat: 5 comparisons at 95% each, not corrected for multiplicity" in text


def test_verdict_from_the_t_interval_without_predictions():
    text = render_markdown(_results(0.03, seeds=(0, 1, 2)), STATS, png_name=None)
    assert text.startswith("**Verdict: LLM lift beyond noise — lightgbm: llm +0.0200 [+0.0200, +0.0200] over "
                           "raw_text; deepfm: llm +0.0200 [+0.0200, +0.0200] over raw_text** (Δ test AUC [95% "
                           "interval, paired t over seeds], paired on the same splits and seeds; an LLM variant must "
                           "beat its twin and the best no-LLM variant, chosen on valid AUC; 3 seed(s)"), text[:400]
    # beats base but loses to the control: plainly "no LLM lift", with how close it came
    line = render_markdown(_results(0.005, seeds=(0, 1, 2)), STATS, png_name=None).splitlines()[0]
    assert line.startswith("**Verdict: no LLM lift: no LLM-derived variant beats its no-LLM twin and the best no-LLM "
                           "variant beyond noise on lightgbm (best no-LLM raw_text; closest llm -0.0050 "
                           "[-0.0050, -0.0050]), deepfm (best no-LLM raw_text; closest llm -0.0050"), line
    # a lift that swings with the seed: its interval crosses 0 -> within noise, not "beats"
    noisy = _results(0.03, seeds=(0, 1, 2, 3), jitter=-0.06)
    diffs = paired_differences(noisy).set_index(["backbone", "variant", "ref"])
    assert diffs.loc[("deepfm", "llm", "base"), "verdict"] == "within noise"
    assert diffs.loc[("deepfm", "llm", "base"), "wins"] == "2/4"
    # the adaptor wins on deepfm only
    line = render_markdown(_results(0.005, seeds=(0, 1, 2), kar_delta=0.03), STATS, png_name=None).splitlines()[0]
    assert "deepfm: llm_kar +0.0200 [+0.0200, +0.0200] over raw_text" in line and "no LLM lift on lightgbm" in line


def _roled(arms: dict[str, tuple[float, float, bool, str | None]], seeds=(0, 1, 2),
           backbones=("lightgbm", "deepfm")) -> pd.DataFrame:
    """Results with the llm/twin columns a retrain writes: arm -> (valid AUC, test AUC, llm, twin); per-seed
    differences exact, plus a seed-dependent offset shared by every arm."""
    return pd.DataFrame([{"backbone": b, "variant": v, "seed": s, "groups": "", "llm": llm, "twin": twin,
                          "valid_auc": va + 0.001 * s, "valid_logloss": 0.6, "valid_gauc": 0.6,
                          "test_auc": te + 0.002 * s, "test_logloss": 0.6, "test_gauc": 0.6}
                         for b in backbones for v, (va, te, llm, twin) in arms.items() for s in seeds])


def test_a_lift_from_taste_alone_is_no_llm_lift():
    """The defect this verdict replaces: llm_kar_taste "beat" raw_text (no taste vector) while its raw-text twin,
    the same adaptor over raw-text vectors and taste, did as well. Only taste lifted it."""
    arms = {"base": (0.70, 0.70, False, None), "raw_text": (0.70, 0.70, False, None),
            "llm": (0.70, 0.70, True, "raw_text"),
            "raw_text_taste": (0.75, 0.75, False, None), "raw_kar_taste": (0.75, 0.75, False, None),
            "llm_taste": (0.75, 0.75, True, "raw_text_taste"),
            "llm_kar_taste": (0.751, 0.75, True, "raw_kar_taste")}
    results = _roled(arms)
    line = render_markdown(results, {}, png_name=None).splitlines()[0]
    assert line.startswith("**Verdict: no LLM lift: no LLM-derived variant beats its no-LLM twin and the best "
                           "no-LLM variant beyond noise on lightgbm (best no-LLM raw_text_taste;"), line
    diffs = paired_differences(results).set_index(["backbone", "variant", "ref"])
    assert diffs.loc[("deepfm", "llm_kar_taste", "raw_kar_taste"), "why"] == "twin"
    assert diffs.loc[("deepfm", "llm_kar_taste", "raw_text_taste"), "why"] == "best no-LLM"
    assert diffs.loc[("deepfm", "llm_taste", "raw_text_taste"), "why"] == "twin + best no-LLM"
    assert ("deepfm", "llm_kar_taste", "raw_text") not in diffs.index  # never judged against a weaker control
    # the same run where the LLM text adds on top of taste: the lift is reported over the best no-LLM variant
    arms["llm_taste"] = (0.78, 0.77, True, "raw_text_taste")
    line = render_markdown(_roled(arms), {}, png_name=None).splitlines()[0]
    assert "lightgbm: llm_taste +0.0200 [+0.0200, +0.0200] over raw_text_taste" in line, line


def test_beating_the_twin_is_not_enough_when_another_control_is_stronger():
    arms = {"base": (0.70, 0.70, False, None), "raw_text": (0.70, 0.70, False, None),
            "raw_text_taste": (0.76, 0.76, False, None), "llm": (0.73, 0.73, True, "raw_text")}
    line = render_markdown(_roled(arms), {}, png_name=None).splitlines()[0]
    assert "no LLM lift" in line and "best no-LLM raw_text_taste; closest llm -0.0300" in line, line


def test_the_gate_never_picks_an_llm_model_that_loses_to_its_twin_on_valid():
    from models.variant_roles import gate_eligible

    arms = {"base": (0.70, 0.70, False, None), "raw_text_taste": (0.750, 0.75, False, None),
            "llm_taste": (0.70, 0.76, True, "raw_text_taste")}
    results = _roled(arms, seeds=(0, 1, 2))
    lucky = (results.variant == "llm_taste") & (results.seed == 0)
    results.loc[lucky, "valid_auc"] = 0.80  # the best single row, from a variant whose mean (0.734) loses to 0.751
    assert results.sort_values("valid_auc", ascending=False).iloc[0].variant == "llm_taste"
    eligible = gate_eligible(results)
    assert not eligible[results.variant == "llm_taste"].any() and eligible[results.variant != "llm_taste"].all()
    picked = results[eligible].sort_values("valid_auc", ascending=False).iloc[0]
    assert picked.variant == "raw_text_taste" and picked.seed == 2
    results.loc[results.variant == "llm_taste", "valid_auc"] = 0.76  # now it beats its twin on valid: eligible
    assert gate_eligible(results).all()
def test_generation_variance_line_present_and_absent():
    results = _results(0.03, seeds=(0, 1, 2))
    text = render_markdown(results, {**STATS, "generation_variance": GEN_VARIANCE}, png_name=None)
    assert ("- Generation-run variance (item text, 60 items x 3 sampling seeds at T=0.7): 12% of texts identical; "
            "same-item vector cosine 0.91 (min 0.62) vs 0.35 between different items") in text
    assert "- Training-seed variance (std of test AUC over seeds, same features): median 0.0020" in text
    absent = render_markdown(results, STATS, png_name=None)
    assert "- Generation-run variance: n/a (run `python -m augment generation-variance`)" in absent


def test_report_markdown_and_png(tmp_path):
    path = write_report(tmp_path, _results(0.03), STATS)
    text = path.read_text()
    assert text.startswith("**Verdict: LLM lift beyond noise")
    assert "\n# CTR retraining report\n" in text and "| test AUC | base | raw_text | llm |" in text
    assert "| lightgbm | llm |" in text and "| deepfm | raw_text |" in text
    assert "0.7310 ± 0.0014" in text  # mean ± std over two seeds
    assert "| generate_items | 520.0 |" in text and "Config digest: `abc123`" in text
    assert "| item | 1,682 | 3.20 | 150,000 | 250.00 | 89.2 |" in text  # output tokens per call
    modes = {"item": {"template": "item_knowledge_desc_v1", "mode": "grounded", "source_text": ["overview"]},
             "user": {"template": "user_preference_v2", "mode": "from the history", "source_text": []}}
    text = write_report(tmp_path, _results(0.03), {**STATS, "prompt_mode": modes}).read_text()
    assert ("Prompt mode: item `item_knowledge_desc_v1`, grounded (source text: overview); user "
            "`user_preference_v2`, from the history") in text
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_with_missing_stats_and_real_results(tmp_path, variant_run):
    out, results = variant_run
    text = write_report(tmp_path, results, {}).read_text()
    assert "Verdict: n/a" in text  # the planted run has no raw_text control
    assert "Peak RSS: n/a MB" in text and "## Feature tables\n\nn/a" in text


@pytest.mark.timeout(180)
def test_saved_test_predictions_pair_variants(tmp_path, variant_run, ctr_data):
    """train_variants saves every model's test predictions; with the noise vector as the raw-text control and the
    planted signal as the LLM variant, one seed is enough for the user bootstrap to call it."""
    from models.report import read_predictions

    out, results = variant_run
    preds = read_predictions(out)
    assert preds is not None and len(preds) == len(results) * len(ctr_data.test)
    assert preds["p"].dtype == np.float32
    for r in results.itertuples():
        model = preds[(preds.backbone == r.backbone) & (preds.variant == r.variant) & (preds.seed == r.seed)]
        assert roc_auc_score(model["label"], model.sort_values("row")["p"]) == pytest.approx(r.test_auc, abs=1e-4)
    rename = {"noise": "raw_text", "signal": "llm"}
    text = render_markdown(results.drop(columns=["llm", "twin"]).replace({"variant": rename}), {}, png_name=None,
                           predictions=preds.assign(variant=preds["variant"].astype(str).replace(rename)))
    first = text.splitlines()[0]
    assert "users bootstrap], paired" in first and "1 seed(s)" in first and "llm +" in first, first


def test_cli_report(tmp_path):
    _results(0.03).to_parquet(tmp_path / "results.parquet")
    (tmp_path / "stats.json").write_text(json.dumps(STATS))
    assert main(["report", "--results", str(tmp_path / "results.parquet"), "--stats",
                 str(tmp_path / "stats.json"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "report.png").exists()


def test_an_llm_variant_is_judged_against_its_twin_and_the_best_control():
    from models.report import comparisons

    arms = {"base": (0.70, 0.70, False, None), "raw_text": (0.71, 0.70, False, None),
            "raw_text_taste": (0.75, 0.75, False, None), "llm": (0.72, 0.72, True, "raw_text"),
            "llm_taste": (0.76, 0.76, True, "raw_text_taste")}
    pairs = comparisons(_roled(arms), "deepfm")
    assert ("llm", "raw_text", "twin") in pairs and ("llm", "raw_text_taste", "best no-LLM") in pairs
    assert ("llm_taste", "raw_text_taste", "twin + best no-LLM") in pairs and ("raw_text_taste", "base", "base") in pairs
    assert not [p for p in pairs if p[0] == "raw_text_taste" and p[1] == "raw_text"]  # controls only vs base


def test_models_that_ran_to_their_cap_are_flagged():
    results = _results(0.03).assign(hit_cap=False)
    assert "ran to their iteration cap" not in render_markdown(results, {}, png_name=None)
    results.loc[(results.backbone == "lightgbm") & (results.variant == "llm"), "hit_cap"] = True
    text = render_markdown(results, {}, png_name=None)
    assert "**2 of 12 models ran to their iteration cap** (train.lgbm_rounds / train.deepfm_epochs)" in text
    assert ": lightgbm/llm. Raise the cap" in text


def test_the_encoder_probe_table_is_in_the_report():
    probe = {"k": 10, "pairs": 70_000, "rows": [
        {"encoder": "embedded:all-minilm-l6-v2@model", "text": "raw", "items": 1682, "recall@10": 0.0812},
        {"encoder": "random vectors (floor)", "text": "-", "items": 1682, "recall@10": 0.0061}]}
    text = render_markdown(_results(0.03), {**STATS, "encoder_probe": probe}, png_name=None)
    assert "## Encoder probe: item-neighbour recall@10 against training co-occurrence" in text
    assert "| embedded:all-minilm-l6-v2@model | raw | 1,682 | 0.0812 |" in text
    assert "Encoder probe" not in render_markdown(_results(0.03), STATS, png_name=None)
