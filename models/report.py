"""report.md + report.png for one retraining run: did the LLM features help, by how much, and at what cost.

The verdict compares the `llm` variant's mean test AUC with `base` and `raw_text` per backbone; then comes the
metric table (mean ± std over seeds), then run statistics (rows, generation throughput, stage times, peak RSS,
feature-table versions, config digest). Missing statistics render as "n/a", never as an error.

    python -m models report --results var/models/results.parquet --stats var/stats.json --out var/report
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # headless: Airflow workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from models.atomic import atomic_path, write_text  # noqa: E402

METRICS = ["valid_auc", "valid_logloss", "valid_gauc", "test_auc", "test_logloss", "test_gauc"]
LLM, BASE, RAW = "llm", "base", "raw_text"
MIN_DELTA = 0.001  # AUC gain below this is reported as no help: seed noise on ~7.5k test rows is of this order


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each metric per (backbone, variant), in first-seen order."""
    keys = ["backbone", "variant"]
    grouped = results.groupby(keys, sort=False)
    summary = grouped[METRICS].mean().add_suffix("_mean").join(grouped[METRICS].std(ddof=1).add_suffix("_std"))
    summary["seeds"] = grouped.size()
    for col in ("best_iteration", "train_seconds"):
        if col in results:
            summary[col] = grouped[col].mean()
    if "groups" in results:
        summary["groups"] = grouped["groups"].first()
    return summary.reset_index()


def _auc(summary: pd.DataFrame, backbone: str, variant: str) -> float | None:
    hit = summary[(summary.backbone == backbone) & (summary.variant == variant)]
    return None if hit.empty else float(hit["test_auc_mean"].iloc[0])


def verdict(summary: pd.DataFrame, min_delta: float = MIN_DELTA) -> str:
    """One line: whether `llm` beat `base` (and `raw_text`) on mean test AUC for each backbone, with deltas."""
    parts, helped = [], {}
    for backbone in dict.fromkeys(summary.backbone):
        llm, base, raw = (_auc(summary, backbone, v) for v in (LLM, BASE, RAW))
        if llm is None or base is None:
            parts.append(f"{backbone}: n/a (needs variants '{LLM}' and '{BASE}')")
            continue
        text = f"{backbone}: llm {llm:.4f} vs base {base:.4f} ({llm - base:+.4f})"
        ok = llm - base > min_delta
        if raw is not None:
            text += f", vs raw_text {raw:.4f} ({llm - raw:+.4f})"
            ok = ok and llm - raw > min_delta
        helped[backbone] = ok
        parts.append(text)
    if not helped:
        head = "Verdict: n/a"
    elif all(helped.values()):
        head = "Verdict: LLM features helped"
    elif not any(helped.values()):
        head = "Verdict: LLM features did not help"
    else:
        yes = ", ".join(b for b, ok in helped.items() if ok)
        no = ", ".join(b for b, ok in helped.items() if not ok)
        head = f"Verdict: LLM features helped for {yes}, did not help for {no}"
    seeds = int(summary["seeds"].max()) if len(summary) else 0
    return (f"**{head}** (mean test AUC over {seeds} seed(s); 'helped' = beats base and raw_text by more than "
            f"{min_delta:g}) — " + "; ".join(parts))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.{digits}f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _cell(row: pd.Series, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if row["seeds"] > 1 and not pd.isna(std):
        return f"{mean:.4f} ± {std:.4f}"
    return _fmt(mean)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return lines


def _stats_sections(stats: Mapping) -> list[str]:
    out: list[str] = []
    rows = stats.get("rows") or {}
    out += ["", "## Data", ""]
    out += _table(["table", "rows"], [[k, v] for k, v in rows.items()]) if rows else ["n/a"]
    gen = stats.get("generation") or {}
    out += ["", "## LLM generation", ""]
    if gen:
        cols = ["prompts", "prompts_per_s", "output_tokens", "output_tokens_per_s"]
        out += _table(["side", *cols], [[side, *[_fmt((g or {}).get(c), 2) for c in cols]]
                                        for side, g in gen.items()])
    else:
        out.append("n/a")
    stages = stats.get("stages") or {}
    out += ["", "## Stage wall times", ""]
    if stages:
        out += _table(["stage", "seconds"], [[k, _fmt(float(v), 1)] for k, v in stages.items()])
        out.append(f"\nTotal: {_fmt(float(sum(stages.values())), 1)} s")
    else:
        out.append("n/a")
    out += ["", f"Peak RSS: {_fmt(stats.get('peak_rss_mb'), 0)} MB"]
    tables = stats.get("feature_tables") or {}
    out += ["", "## Feature tables", ""]
    out += _table(["table", "version"], [[k, str(v)] for k, v in tables.items()]) if tables else ["n/a"]
    out += ["", f"Config digest: `{stats.get('config_digest') or 'n/a'}`"]
    return out


def render_markdown(results: pd.DataFrame, stats: Mapping, png_name: str | None = "report.png") -> str:
    summary = summarize(results)
    lines = ["# CTR retraining report", "", verdict(summary), "", "## Metrics (model chosen on valid)", ""]
    header = ["backbone", "variant", "groups", "seeds", "valid AUC", "valid LogLoss", "valid GAUC", "test AUC",
              "test LogLoss", "test GAUC", "best iter", "train s"]
    body = [[r["backbone"], r["variant"], r.get("groups") or "-", int(r["seeds"]),
             *[_cell(r, m) for m in METRICS], _fmt(r.get("best_iteration"), 1), _fmt(r.get("train_seconds"), 1)]
            for _, r in summary.iterrows()]
    lines += _table(header, body)
    lines += _stats_sections(stats)
    if png_name:
        lines += ["", f"![test AUC and stage times]({png_name})"]
    return "\n".join(lines) + "\n"


def plot(results: pd.DataFrame, stats: Mapping, target: Path) -> Path:
    summary = summarize(results)
    stages = stats.get("stages") or {}
    fig, (ax_auc, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    backbones = list(dict.fromkeys(summary.backbone))
    variants = list(dict.fromkeys(summary.variant))
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(backbones))
    for j, variant in enumerate(variants):
        sub = summary[summary.variant == variant].set_index("backbone").reindex(backbones)
        err = sub["test_auc_std"].fillna(0).to_numpy() if (sub["seeds"] > 1).any() else None
        ax_auc.bar(x + (j - (len(variants) - 1) / 2) * width, sub["test_auc_mean"].to_numpy(), width,
                   yerr=err, capsize=3, label=variant)
    values = summary["test_auc_mean"].dropna()
    if len(values):  # zoom in: AUC differences of 0.01 vanish on a 0..1 axis
        lo, hi = float(values.min()), float(values.max())
        pad = max(0.02, (hi - lo) * 0.5)
        ax_auc.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    ax_auc.set_xticks(x, backbones)
    ax_auc.set_ylabel("test AUC")
    ax_auc.set_title("Test AUC per backbone and variant")
    ax_auc.legend(title="variant")
    if stages:
        names = list(stages)
        ax_time.barh(names, [float(stages[n]) for n in names])
        ax_time.invert_yaxis()
        ax_time.set_xlabel("seconds")
    else:
        ax_time.text(0.5, 0.5, "no stage timings", ha="center", va="center")
        ax_time.set_axis_off()
    ax_time.set_title("Stage wall time")
    fig.tight_layout()
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return target


def write_report(out_dir: Path, results: pd.DataFrame, stats: Mapping) -> Path:
    """Write report.md and report.png into out_dir; return the report.md path."""
    if results.empty:
        raise ValueError("write_report: results table is empty")
    missing = [c for c in ["backbone", "variant", *METRICS] if c not in results.columns]
    if missing:
        raise ValueError(f"write_report: results lack column(s) {missing}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, stats or {}, out_dir / "report.png")
    return write_text(out_dir / "report.md", render_markdown(results, stats or {}))
