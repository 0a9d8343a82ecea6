"""The ml-latest-small + TMDB overviews table (issue 26): grounded LLM text, the overviews themselves and titles,
each with history taste, on every backbone, with paired intervals against the matched text.

It reads two finished retrain runs of the same data, splits and seeds (the product's own commands made them):

- the LLM arm (configs/ml-latest-small-overviews.yaml): `llm_*` = grounded LLM text, `raw_*` = title + overview
- the human arm (configs/ml-latest-small-overviews-human.yaml): `llm_*` = the overview itself, `raw_*` = title

and renames their variants by the text they read (title / source = title + overview / overview / grounded LLM),
then pairs them on the same test rows, seed by seed: a paired t interval over seeds and a bootstrap over test
users (models/report.py, the report's own functions). Prints a markdown table and writes a plot beside --out.

    python bench/models/overview_table.py --llm-run var/tmdb-llm/runs/<id> --human-run var/tmdb-human/runs/<id> \
        --out docs/img/overview-table.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from models.report import read_predictions, t_interval, user_bootstrap

# (arm, variant in that arm) -> name by what the model reads
NAMES = {
    ("human", "base"): "base",
    ("human", "raw_text"): "title",
    ("human", "raw_text_taste"): "title+taste",
    ("human", "raw_text_taste_st"): "title+taste_st",
    ("human", "raw_kar_taste"): "title+kar_taste",
    ("human", "llm_item"): "overview",
    ("human", "llm_item_taste"): "overview+taste",
    ("human", "llm_item_taste_st"): "overview+taste_st",
    ("human", "llm_kar_item_taste"): "overview+kar_taste",
    ("llm", "raw_text"): "source",
    ("llm", "raw_text_taste"): "source+taste",
    ("llm", "raw_text_taste_st"): "source+taste_st",
    ("llm", "raw_kar_taste"): "source+kar_taste",
    ("llm", "llm_item"): "grounded",
    ("llm", "llm_item_taste"): "grounded+taste",
    ("llm", "llm_item_taste_st"): "grounded+taste_st",
    ("llm", "llm_kar_item_taste"): "grounded+kar_taste",
}
# (variant, reference, why): each LLM arm against the same text without the LLM, and against the title
PAIRS = [(f"{a}{s}", f"{b}{s}", why) for s in ("", "+taste", "+taste_st", "+kar_taste") for a, b, why in (
    ("grounded", "source", "twin: same source text, no LLM"),
    ("grounded", "title", "vs title text"),
    ("overview", "title", "human text vs title"),
)] + [("title+taste", "title", "taste adds"), ("title+taste_st", "title+taste", "short-term taste adds")]


def load_arm(run: Path, arm: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = pd.read_parquet(run / "results.parquet")
    preds = read_predictions(run)
    if preds is None:
        raise SystemExit(f"error: {run}: no test_predictions.parquet (a run from before predictions were saved)")
    keep = {v for (a, v) in NAMES if a == arm}
    results = results[results["variant"].isin(keep)].copy()
    results["variant"] = [NAMES[arm, v] for v in results["variant"]]
    preds = preds[preds["variant"].isin(keep)].copy()
    preds["variant"] = [NAMES[arm, v] for v in preds["variant"].astype(str)]
    return results, preds


def table(results: pd.DataFrame, preds: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    rows = []
    for backbone, sub in results.groupby("backbone", sort=False):
        auc = sub.pivot_table(index="seed", columns="variant", values="test_auc")
        valid = sub.pivot_table(index="seed", columns="variant", values="valid_auc")
        boot = user_bootstrap(preds[preds["backbone"] == backbone], n_boot)
        for v, ref, why in PAIRS:
            if v not in auc or ref not in auc:
                continue
            diff = (auc[v] - auc[ref]).dropna()
            t_lo, t_hi = t_interval(diff.to_numpy())
            b_lo, b_hi = boot(v, ref, [int(s) for s in diff.index])
            rows.append({"backbone": backbone, "variant": v, "ref": ref, "why": why, "seeds": len(diff),
                         "test_auc": auc[v].mean(), "ref_test_auc": auc[ref].mean(),
                         "valid_delta": float((valid[v] - valid[ref]).mean()), "delta": float(diff.mean()),
                         "t_low": t_lo, "t_high": t_hi, "boot_low": b_lo, "boot_high": b_hi,
                         "verdict": "beats" if b_lo > 0 else "worse" if b_hi < 0 else "within noise"})
    return pd.DataFrame(rows)


def markdown(results: pd.DataFrame, diffs: pd.DataFrame) -> str:
    order = ["base", "title", "title+taste", "title+taste_st", "title+kar_taste", "source", "source+taste",
             "source+taste_st", "source+kar_taste", "overview", "overview+taste", "overview+taste_st",
             "overview+kar_taste", "grounded", "grounded+taste", "grounded+taste_st", "grounded+kar_taste"]
    mean = results.groupby(["backbone", "variant"])["test_auc"].agg(["mean", "std"]).reset_index()
    backbones = list(dict.fromkeys(results["backbone"]))
    lines = ["| test AUC, mean ± std over seeds | " + " | ".join(backbones) + " |",
             "|---|" + "---|" * len(backbones)]
    for v in order:
        cells = []
        for b in backbones:
            r = mean[(mean.backbone == b) & (mean.variant == v)]
            cells.append(f"{r['mean'].iloc[0]:.4f} ± {r['std'].iloc[0]:.4f}" if len(r) else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "| backbone | variant | vs | why | Δ valid | Δ test | 95% paired t (seeds) | 95% bootstrap (test users)"
              " | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in diffs.itertuples():
        lines.append(f"| {r.backbone} | {r.variant} | {r.ref} | {r.why} | {r.valid_delta:+.4f} | {r.delta:+.4f} | "
                     f"[{r.t_low:+.4f}, {r.t_high:+.4f}] | [{r.boot_low:+.4f}, {r.boot_high:+.4f}] | {r.verdict} |")
    return "\n".join(lines)


def plot(diffs: pd.DataFrame, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = diffs.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(d) + 1.2))
    y = np.arange(len(d))[::-1]
    ax.errorbar(d["delta"], y, xerr=[d["delta"] - d["boot_low"], d["boot_high"] - d["delta"]], fmt="o",
                color="tab:blue", ecolor="tab:gray", capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [f"{r.backbone}: {r.variant} − {r.ref}" for r in d.itertuples()], fontsize=8)
    ax.set_xlabel("Δ test AUC (95% bootstrap over test users)")
    ax.set_title("ml-latest-small + TMDB overviews: paired differences")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-run", type=Path, required=True)
    parser.add_argument("--human-run", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="plot path (.png)")
    parser.add_argument("--boot", type=int, default=2000)
    args = parser.parse_args(argv)
    r_llm, p_llm = load_arm(args.llm_run, "llm")
    r_hum, p_hum = load_arm(args.human_run, "human")
    # the arms must be the same test rows, same labels, in the same order: else nothing here is paired
    a = p_llm.drop_duplicates("row").sort_values("row")[["user_id", "label"]].to_numpy()
    b = p_hum.drop_duplicates("row").sort_values("row")[["user_id", "label"]].to_numpy()
    if a.shape != b.shape or not (a == b).all():
        print("error: the two runs have different test rows (not the same data and splits)", file=sys.stderr)
        return 2
    results = pd.concat([r_hum, r_llm], ignore_index=True)
    preds = pd.concat([p_hum, p_llm], ignore_index=True)
    diffs = table(results, preds, args.boot)
    print(markdown(results, diffs))
    if args.out:
        plot(diffs, args.out)
        print(f"\nplot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
