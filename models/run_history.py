"""The history of a daily deployment: one row per interval's retrain (what the interval brought, what it cost, how
the challenger and the champion ranked the newest interval, whether the gate promoted), as a table and a plot.

Rows live in <workdir>/history/<interval end>.json (one file per interval, atomically replaced, so a re-run of an
interval updates its row and two intervals never write the same file); `write_history` folds them into
<workdir>/history.md and history.png. The retrain stage calls `record_run` after its gate.

    python -m models history --config configs/ml100k.yaml      # print the table, rewrite the plot
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Mapping

import pandas as pd

from common.files import atomic_path, atomic_write_json, atomic_write_text
from configs.run_config import interval_tag
from models.metrics import json_safe

COLUMNS = ("end", "kind", "new_interactions", "window_intervals", "test_rows", "profiles_written", "items_written",
           "llm_calls", "output_tokens",
           "augment_seconds", "retrain_seconds", "models_trained", "champion_auc", "challenger_auc",
           "champion_gauc", "challenger_gauc", "delta_auc", "delta_low", "delta_high", "cold_rows",
           "challenger_cold_auc", "promoted")


def history_dir(work: Path) -> Path:
    return Path(work) / "history"


def record_run(work: Path, row: Mapping) -> Path:
    """Write one interval's row and refresh the table and plot."""
    path = history_dir(work) / f"{interval_tag(datetime.fromisoformat(row['end']))}.json"
    atomic_write_json(path, json_safe(dict(row)))
    write_history(work)
    return path


def read_history(work: Path) -> pd.DataFrame:
    files = sorted(history_dir(work).glob("*.json"))
    rows = [json.loads(p.read_text()) for p in files]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    frame["end"] = pd.to_datetime(frame["end"], utc=True)
    return frame.sort_values("end").reset_index(drop=True)


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _delta(row: Mapping) -> str:
    d = row.get("delta_auc")
    if d is None or (isinstance(d, float) and math.isnan(d)):
        return "-"
    lo, hi = row.get("delta_low"), row.get("delta_high")
    noise = "" if lo is None or math.isnan(lo) else (" (within noise)" if lo <= 0 <= hi else "")
    return f"{d:+.4f} [{_fmt(lo)}, {_fmt(hi)}]{noise}"


def _refreshed(row: Mapping) -> str:
    """The tables the champion served with this interval's versions (fresh features), and refusals."""
    got, refused = row.get("features_refreshed"), row.get("features_refused")
    text = ", ".join(got) if isinstance(got, list) and got else "-"
    return text + (f" (refused: {', '.join(refused)})" if isinstance(refused, list) and refused else "")


def history_markdown(work: Path) -> str:
    """The history as a Markdown table (AUC/GAUC on each run's gate window: its newest `stream.test_intervals`)."""
    h = read_history(work)
    head = ("| interval end | run | new interactions | profiles / items written | LLM calls | output tokens | "
            "augment task-s | retrain s | gate window: intervals / rows | champion AUC / GAUC | challenger AUC / "
            "GAUC | challenger - champion AUC [95% paired CI] | cold rows: AUC | promoted | champion serves newer |")
    lines = [head, "|" + "---|" * 15]
    for r in h.to_dict(orient="records"):
        lines.append(
            f"| {r['end']:%Y-%m-%d %H:%M} | {r['kind']} | {r['new_interactions']} | "
            f"{r['profiles_written']} / {r['items_written']} | {r['llm_calls']} | {r['output_tokens']} | "
            f"{_fmt(r['augment_seconds'], 1)} | {_fmt(r['retrain_seconds'], 1)} | "
            f"{_fmt(r.get('window_intervals', 1))} / {_fmt(r.get('test_rows'))} | "
            f"{_fmt(r.get('champion_auc'))} / {_fmt(r.get('champion_gauc'))} | "
            f"{_fmt(r.get('challenger_auc'))} / {_fmt(r.get('challenger_gauc'))} | {_delta(r)} | "
            f"{_fmt(r.get('cold_rows'))}: {_fmt(r.get('challenger_cold_auc'))} | {_fmt(bool(r['promoted']))} | "
            f"{_refreshed(r)} |")
    # Parallel shards overlap, so the stages' summed seconds exceed the run's wall time (the runner prints that).
    lines.append("\naugment task-s: the augment stages' own seconds, summed; shards that ran side by side overlap, "
                 "so this is compute spent, not the run's wall time.")
    return "\n".join(lines) + "\n"


def plot_history(h: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: Airflow workers and CI have no display
    import matplotlib.pyplot as plt

    fig, (ax_auc, ax_gate, ax_cost) = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True,
                                                   gridspec_kw={"height_ratios": [3, 2, 3]})
    x = range(len(h))
    labels = [f"{e:%m-%d}" + ("\n(boot)" if k == "bootstrap" else "") for e, k in zip(h["end"], h["kind"])]
    ax_auc.plot(x, h["challenger_auc"].astype(float), "o-", label="challenger AUC (newest interval)")
    ax_auc.plot(x, h["champion_auc"].astype(float), "s--", label="champion AUC (same rows)")
    for i, promoted in enumerate(h["promoted"]):
        if promoted:
            ax_auc.annotate("promoted", (i, float(h["challenger_auc"].iloc[i])), textcoords="offset points",
                            xytext=(0, 8), ha="center", fontsize=8)
    ax_auc.set_ylabel("AUC")
    ax_auc.legend(fontsize=8)
    ax_auc.set_title("Daily runs: models on the newest interval, and what each interval cost")
    # the gate's evidence: challenger - champion on the same rows, with its paired 95% bootstrap interval (a wide
    # interval across 0 is a decision on noise, whatever the gate did)
    delta = h["delta_auc"].astype(float)
    lo = (delta - h["delta_low"].astype(float)).clip(lower=0)
    hi = (h["delta_high"].astype(float) - delta).clip(lower=0)
    has = delta.notna()
    xs = [i for i, ok in zip(x, has) if ok]
    if xs:
        colours = ["tab:green" if p else "tab:gray" for p, ok in zip(h["promoted"], has) if ok]
        ax_gate.errorbar(xs, delta[has], yerr=[lo[has], hi[has]], fmt="none", ecolor="tab:gray", capsize=3)
        ax_gate.scatter(xs, delta[has], c=colours, zorder=3, label="Δ AUC (green: promoted)")
        ax_gate.legend(fontsize=8)
    ax_gate.axhline(0, color="black", lw=0.8)
    ax_gate.set_ylabel("challenger − champion\n(95% interval)", fontsize=8)
    ax_cost.bar([i - 0.2 for i in x], h["augment_seconds"].astype(float), width=0.4, label="augment task-s (summed)")
    ax_cost.bar([i + 0.2 for i in x], h["retrain_seconds"].astype(float), width=0.4, label="retrain s")
    ax_cost.set_yscale("log")
    ax_cost.set_ylabel("seconds (log)")
    calls = ax_cost.twinx()
    calls.plot(x, h["llm_calls"].astype(float), "k^:", label="LLM calls")
    calls.set_ylabel("LLM calls")
    calls.set_ylim(bottom=0)
    ax_cost.set_xticks(list(x), labels, fontsize=8)
    handles = ax_cost.get_legend_handles_labels()
    more = calls.get_legend_handles_labels()
    ax_cost.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_history(work: Path) -> tuple[Path, Path]:
    """<workdir>/history.md and history.png from every recorded interval."""
    work = Path(work)
    h = read_history(work)
    md = atomic_write_text(work / "history.md", "# Daily runs\n\n" + history_markdown(work))
    png = plot_history(h, work / "history.png") if len(h) else work / "history.png"
    return md, png
