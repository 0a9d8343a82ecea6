"""report.md + report.png for one retraining run: did the LLM features help, by how much, and at what cost.

The FIRST LINE is the verdict: did the LLM variant (fixed in advance: `llm_kar` where run, else `llm`) beat
`base` and the `raw_text` control on mean test AUC, by more than the seed-to-seed std? Then the ablation table
(backbone x variant, mean ± std over seeds), paired lifts per seed, all metrics, the promotion-gate decision,
training speed, and run statistics (rows, generation throughput, stage times, peak RSS, feature-table versions,
config digest). Missing statistics render as "n/a", never as an error.

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

from feature_store.files import atomic_path, atomic_write_text  # noqa: E402

METRICS = ["valid_auc", "valid_logloss", "valid_gauc", "test_auc", "test_logloss", "test_gauc"]
LLM, KAR, BASE, RAW = "llm", "llm_kar", "base", "raw_text"
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


def primary_llm_variant(variants: list[str]) -> str | None:
    """The LLM variant the verdict judges, fixed in advance (no picking the best on test): the adaptor if the
    backbone ran it, else both knowledge vectors as plain DenseFeat, else the first other LLM variant the run
    names (e.g. `llm_item` when only item text exists)."""
    return next((v for v in (KAR, LLM) if v in variants), next((v for v in variants if v.startswith("llm")), None))


def paired_lifts(results: pd.DataFrame, metric: str = "test_auc") -> pd.DataFrame:
    """Per (backbone, variant): lift over base and over raw_text, paired by seed (same splits, same seed).

    Columns: lift_base, lift_base_std (std of the per-seed differences), wins_base (seeds where the variant
    won), same for raw; seed_std = the larger seed-to-seed std of the two arms; exceeds_std = lift_base > seed_std.
    """
    rows = []
    for backbone, sub in results.groupby("backbone", sort=False):
        table = sub.pivot_table(index="seed", columns="variant", values=metric)
        for variant in dict.fromkeys(sub["variant"]):
            row: dict[str, Any] = {"backbone": backbone, "variant": variant}
            for ref, key in ((BASE, "base"), (RAW, "raw")):
                if ref not in table or variant == ref:
                    continue
                diff = (table[variant] - table[ref]).dropna()
                row[f"lift_{key}"] = float(diff.mean()) if len(diff) else float("nan")
                row[f"lift_{key}_std"] = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
                row[f"wins_{key}"] = f"{int((diff > 0).sum())}/{len(diff)}"
                if key == "base":
                    seed_std = max(float(table[variant].std(ddof=1)), float(table[ref].std(ddof=1))) \
                        if len(table) > 1 else float("nan")
                    row["seed_std"] = seed_std
                    row["exceeds_std"] = bool(len(table) > 1 and row["lift_base"] > seed_std)
            rows.append(row)
    return pd.DataFrame(rows)


def verdict(summary: pd.DataFrame, min_delta: float = MIN_DELTA, lifts: pd.DataFrame | None = None) -> str:
    """One line: whether the LLM variant beat `base` and the raw-text control on mean test AUC, per backbone.

    'Helped' = beats base AND raw_text by more than min_delta and, with >= 2 seeds, by more than the
    seed-to-seed std. The judged variant is fixed in advance (`primary_llm_variant`)."""
    parts, helped = [], {}
    for backbone in dict.fromkeys(summary.backbone):
        variant = primary_llm_variant(list(summary[summary.backbone == backbone].variant))
        llm, base, raw = (_auc(summary, backbone, v) for v in (variant or "", BASE, RAW))
        if llm is None or base is None:
            parts.append(f"{backbone}: n/a (needs an LLM variant and '{BASE}')")
            continue
        noise = _seed_std(summary, backbone, variant)
        lift = llm - base
        text = f"{backbone} {variant}: {llm:.4f} vs base {base:.4f} ({lift:+.4f}"
        if not math.isnan(noise):
            text += f"; seed std {noise:.4f}, lift {'exceeds' if lift > noise else 'within'} it"
        text += ")"
        ok = lift > max(min_delta, 0.0 if math.isnan(noise) else noise)
        if raw is not None:
            beats = llm - raw > min_delta
            text += (f"; raw-text control {raw:.4f} ({raw - base:+.4f} vs base): LLM "
                     f"{'beats' if beats else 'does NOT beat'} the control ({llm - raw:+.4f})")
            ok = ok and beats
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
    return (f"**{head}** (mean test AUC over {seeds} seed(s); 'helped' = beats base by more than "
            f"max({min_delta:g}, seed std) and the raw-text control by more than {min_delta:g}) — "
            + "; ".join(parts))


def _seed_std(summary: pd.DataFrame, backbone: str, variant: str) -> float:
    sub = summary[(summary.backbone == backbone) & summary.variant.isin([variant, BASE])]
    if len(sub) < 2 or (sub["seeds"] < 2).any():
        return float("nan")
    return float(sub["test_auc_std"].max())


def _auc(summary: pd.DataFrame, backbone: str, variant: str) -> float | None:
    hit = summary[(summary.backbone == backbone) & (summary.variant == variant)]
    return None if hit.empty else float(hit["test_auc_mean"].iloc[0])


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
    hygiene = stats.get("data") or {}
    if hygiene:
        neg = hygiene.get("negatives") or {}
        out += ["", f"Ingest read {hygiene.get('rows_read', 'n/a')} interaction rows and dropped "
                    f"{hygiene.get('duplicates_dropped', 0)} exact duplicates (data.duplicates); id types: user "
                    f"{hygiene.get('user_id_type', 'int')}, item {hygiene.get('item_id_type', 'int')}."
                + (f" Split sampled {neg.get('sampled')} negatives ({neg.get('dropped')} draws dropped)."
                   if neg else "")]
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


def _ablation_table(summary: pd.DataFrame) -> list[str]:
    variants = list(dict.fromkeys(summary.variant))
    rows = []
    for backbone in dict.fromkeys(summary.backbone):
        sub = summary[summary.backbone == backbone].set_index("variant")
        rows.append([backbone, *[_cell(sub.loc[v], "test_auc") if v in sub.index else "-" for v in variants]])
    return _table(["test AUC", *variants], rows)


def _lift_table(lifts: pd.DataFrame) -> list[str]:
    if lifts.empty:
        return ["n/a"]

    def pm(row: pd.Series, key: str) -> str:
        mean, std = row.get(f"lift_{key}"), row.get(f"lift_{key}_std")
        if mean is None or pd.isna(mean):
            return "-"
        return f"{mean:+.4f}" + (f" ± {std:.4f}" if std is not None and not pd.isna(std) else "")

    body = []
    for _, r in lifts.iterrows():
        if r["variant"] == BASE:
            continue
        exceeds = r.get("exceeds_std")
        body.append([r["backbone"], r["variant"], pm(r, "base"), r.get("wins_base") or "-",
                     _fmt(r.get("seed_std")), "yes" if exceeds is True else ("no" if exceeds is False else "n/a"),
                     pm(r, "raw"), r.get("wins_raw") if isinstance(r.get("wins_raw"), str) else "-"])
    return _table(["backbone", "variant", "Δ test AUC vs base (paired)", "seeds won", "seed std",
                   "lift > seed std", "Δ vs raw_text (paired)", "seeds won"], body)


def _promotion_section(decision: Mapping | None) -> list[str]:
    out = ["", "## Promotion gate", ""]
    if not decision:
        return out + ["n/a (no registry decision in this run)"]
    ch = decision.get("challenger") or {}
    out.append(f"**{'PROMOTED' if decision.get('promoted') else 'Champion kept'}** — {decision.get('reason')}")
    out.append("")
    out.append(f"- challenger: {ch.get('backbone')}/{ch.get('variant')} seed={ch.get('seed')} "
               f"valid AUC {_fmt(ch.get('valid_auc'))} (`{ch.get('model_path')}`)")
    champ = decision.get("champion")
    if champ:
        out.append(f"- champion: {champ.get('backbone')}/{champ.get('variant')} seed={champ.get('seed')} "
                   f"valid AUC {_fmt(champ.get('valid_auc', champ.get('valid_auc_now')))} "
                   f"(`{champ.get('model_path')}`)")
    rows = {"test": "newest interval's"}.get(decision.get("gate_rows", "valid"), "valid")
    out.append(f"- margin: {decision.get('margin')}; both scored on the same {rows} rows")
    return out


def _speed_section(results: pd.DataFrame) -> list[str]:
    if "rows_per_second" not in results:
        return []
    g = results.groupby(["backbone", "variant"], sort=False)[["rows_per_second", "train_seconds"]].mean()
    body = [[b, v, _fmt(float(r.rows_per_second), 0), _fmt(float(r.train_seconds), 1)]
            for (b, v), r in g.iterrows()]
    return ["", "## Training speed (this run)", ""] + _table(["backbone", "variant", "rows/s", "train s"], body)


def render_markdown(results: pd.DataFrame, stats: Mapping, png_name: str | None = "report.png") -> str:
    summary = summarize(results)
    lifts = paired_lifts(results)
    lines = [verdict(summary), "", "# CTR retraining report", "",
             "## Ablation: test AUC (mean ± std over seeds; each model chosen on valid, test read once)", ""]
    lines += _ablation_table(summary)
    lines += ["", "## Lift over base and over the raw-text control (same splits, paired by seed)", ""]
    lines += _lift_table(lifts)
    lines += ["", "## All metrics", ""]
    header = ["backbone", "variant", "groups", "seeds", "valid AUC", "valid LogLoss", "valid GAUC", "test AUC",
              "test LogLoss", "test GAUC", "best iter", "train s"]
    body = [[r["backbone"], r["variant"], r.get("groups") or "-", int(r["seeds"]),
             *[_cell(r, m) for m in METRICS], _fmt(r.get("best_iteration"), 1), _fmt(r.get("train_seconds"), 1)]
            for _, r in summary.iterrows()]
    lines += _table(header, body)
    lines += _promotion_section(stats.get("promotion"))
    if stats.get("history"):  # a daily run: every interval so far (models/run_history.py)
        lines += ["", "## Daily runs: the newest interval of each run (history.png beside history.md)", "",
                  stats["history"].rstrip("\n")]
    lines += _speed_section(results)
    lines += _stats_sections(stats)
    if png_name:
        lines += ["", f"![test AUC per backbone and variant, and stage times]({png_name})"]
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
    return atomic_write_text(out_dir / "report.md", render_markdown(results, stats or {}))
