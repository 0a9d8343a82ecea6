"""report.md starts with the verdict, shows every backbone x variant, renders stats or n/a; report.png is a PNG."""
import json

import pandas as pd
import pytest

from models.__main__ import main
from models.report import paired_lifts, summarize, verdict, write_report

STATS = {
    "rows": {"interactions": 100_000, "ctr_train": 60_000},
    "generation": {"item": {"prompts": 1682, "prompts_per_s": 3.2, "output_tokens": 150_000,
                            "output_tokens_per_s": 250.0}},
    "stages": {"generate_items": 520.0, "encode": 40.0, "train": 95.5},
    "peak_rss_mb": 3100.0,
    "feature_tables": {"item_knowledge_emb": "v3"},
    "config_digest": "abc123",
}


def _results(llm_delta: float, seeds=(0, 1), kar_delta: float | None = None) -> pd.DataFrame:
    rows = []
    for backbone in ("lightgbm", "deepfm"):
        arms = [("base", 0.70), ("raw_text", 0.71), ("llm", 0.70 + llm_delta)]
        if kar_delta is not None and backbone == "deepfm":
            arms.append(("llm_kar", 0.70 + kar_delta))
        for variant, base_auc in arms:
            for s in seeds:
                rows.append({"backbone": backbone, "variant": variant, "seed": s, "groups": "",
                             "valid_auc": base_auc, "valid_logloss": 0.6, "valid_gauc": 0.65,
                             "test_auc": base_auc + 0.002 * s, "test_logloss": 0.6, "test_gauc": 0.64,
                             "best_iteration": 3, "train_seconds": 1.0})
    return pd.DataFrame(rows)


def test_verdict_helped_and_not():
    assert verdict(summarize(_results(0.03))).startswith("**Verdict: LLM features helped**")
    line = verdict(summarize(_results(0.005)))  # beats base, loses to raw_text
    assert line.startswith("**Verdict: LLM features did not help**")
    assert "raw-text control 0.7110 (+0.0100 vs base): LLM does NOT beat the control (-0.0050)" in line
    assert "seed std 0.0014, lift exceeds it" in line


def test_verdict_judges_the_adaptor_when_present_and_respects_seed_noise():
    line = verdict(summarize(_results(0.03, kar_delta=-0.01)))
    assert line.startswith("**Verdict: LLM features helped for lightgbm, did not help for deepfm**")
    assert "deepfm llm_kar: 0.6910" in line
    # a lift smaller than the seed-to-seed std is not called help
    noisy = _results(0.03)
    noisy.loc[noisy.seed == 1, "test_auc"] += 0.1
    noisy.loc[(noisy.seed == 1) & (noisy.variant == "llm"), "test_auc"] -= 0.1
    assert verdict(summarize(noisy)).startswith("**Verdict: LLM features did not help**")


def test_paired_lifts():
    lifts = paired_lifts(_results(0.03)).set_index(["backbone", "variant"])
    row = lifts.loc[("deepfm", "llm")]
    assert row["lift_base"] == pytest.approx(0.03) and row["wins_base"] == "2/2"
    assert row["lift_raw"] == pytest.approx(0.02) and row["exceeds_std"]


def test_report_markdown_and_png(tmp_path):
    path = write_report(tmp_path, _results(0.03), STATS)
    text = path.read_text()
    assert text.startswith("**Verdict: LLM features helped**")
    assert "\n# CTR retraining report\n" in text and "| test AUC | base | raw_text | llm |" in text
    assert "| lightgbm | llm |" in text and "| deepfm | raw_text |" in text
    assert "0.7310 ± 0.0014" in text  # mean ± std over two seeds
    assert "| generate_items | 520.0 |" in text and "Config digest: `abc123`" in text
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_with_missing_stats_and_real_results(tmp_path, variant_run):
    _, results = variant_run
    text = write_report(tmp_path, results, {}).read_text()
    assert "Verdict: n/a" in text  # the planted run has no 'llm' variant
    assert "Peak RSS: n/a MB" in text and "## Feature tables\n\nn/a" in text


def test_cli_report(tmp_path):
    _results(0.03).to_parquet(tmp_path / "results.parquet")
    (tmp_path / "stats.json").write_text(json.dumps(STATS))
    assert main(["report", "--results", str(tmp_path / "results.parquet"), "--stats",
                 str(tmp_path / "stats.json"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "report.png").exists()
