"""report.md + report.png for one retraining run: did the LLM features help, by how much, and at what cost.

The FIRST LINE is the verdict, like for like (models/variant_roles.py): per backbone, which LLM-derived variants
beat BOTH their no-LLM twin (same treatment, raw text in place of LLM text) and the best no-LLM variant (chosen on
valid) with the 95% interval of the paired test-AUC difference above 0, and by how much — or plainly "no LLM
lift", with the closest LLM variant's difference. A lift that comes from the taste vectors alone is no LLM lift. Intervals
come two ways: a paired t over seeds (same splits, same seed, from results.parquet) and a bootstrap over test
USERS on the saved test predictions (test_predictions.parquet, same rows for both arms); the verdict reads the
bootstrap when predictions exist. Then the ablation table (backbone x variant, mean ± std over seeds), the
paired-differences table, training-seed vs generation-run variance (<stats dir>/generation_variance.json), all
metrics, the promotion-gate decision, training speed, and run statistics (rows, generation throughput, stage
times, peak RSS, feature-table versions, config digest). Missing statistics render as "n/a", never as an error.

    python -m models report --results <run dir>/results.parquet --stats var/stats.json --out var/report
    # test_predictions.parquet beside results.parquet is read when present (--predictions to point elsewhere)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import matplotlib

matplotlib.use("Agg")  # headless: Airflow workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import sparse  # noqa: E402
from scipy.stats import t as student_t  # noqa: E402

from common.files import atomic_path, atomic_write_text  # noqa: E402
from models.train_variants import PREDICTIONS  # noqa: E402
from models.variant_roles import BASE, best_no_llm, roles  # noqa: E402

METRICS = ["valid_auc", "valid_logloss", "valid_gauc", "test_auc", "test_logloss", "test_gauc"]
LEVEL, N_BOOT = 0.95, 1000


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


def comparisons(results: pd.DataFrame, backbone: str) -> list[tuple[str, str, str]]:
    """(variant, reference, why) pairs the report judges on one backbone: every no-LLM variant against base
    ("base"); every LLM-derived variant against base, its twin ("twin") and the best no-LLM variant of the backbone
    ("best no-LLM", chosen on valid), each reference once."""
    role = roles(results)
    run = list(dict.fromkeys(results.loc[results.backbone == backbone, "variant"]))
    best = best_no_llm(results, backbone)
    out = []
    for v in run:
        refs = [(BASE, "base")]
        if role[v].llm:
            refs += [(role[v].twin, "twin"), (best, "best no-LLM")]
        seen: dict[str, list[str]] = {}
        for ref, why in refs:
            if ref is not None and ref != v and ref in run:
                seen.setdefault(ref, []).append(why)
        out += [(v, ref, " + ".join(whys)) for ref, whys in seen.items()]
    return out


def t_interval(diffs: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Paired t interval of the mean per-seed difference (nan with fewer than 2 seeds)."""
    n = len(diffs)
    if n < 2:
        return float("nan"), float("nan")
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * float(np.std(diffs, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(diffs))
    return mean - half, mean + half


def pair_counts(y: np.ndarray, p: np.ndarray, users: np.ndarray, n_users: int) -> np.ndarray:
    """A[u, v] = sum over positives i of user u and negatives j of user v of [p_i > p_j] + 1/2 [p_i = p_j].

    The AUC of any resample of whole users, user u drawn c_u times, is c'Ac / ((c'pos)(c'neg)): one matrix per
    model turns every bootstrap draw into a quadratic form instead of a sort of the drawn rows."""
    neg = y == 0
    order = np.argsort(p[neg], kind="stable")
    p_neg = p[neg][order]
    below = np.zeros((len(p_neg) + 1, n_users), np.float32)  # below[k, v]: negatives of user v among the k lowest
    np.cumsum(np.eye(n_users, dtype=np.float32)[users[neg][order]], axis=0, out=below[1:])  # exact to 2**24
    p_pos = p[~neg]
    wins = 0.5 * (below[np.searchsorted(p_neg, p_pos, "left")] + below[np.searchsorted(p_neg, p_pos, "right")])
    owner = sparse.csr_matrix((np.ones(len(p_pos)), (users[~neg], np.arange(len(p_pos)))),
                              shape=(n_users, len(p_pos)))  # one-hot user of each positive: sums rows per user
    return owner @ wins


def user_bootstrap(predictions: pd.DataFrame, n_boot: int = N_BOOT,
                   seed: int = 0) -> Callable[[str, str, list[int], float], tuple[float, float]]:
    """For one backbone's test predictions (train_variants.predictions_frame): a function (variant, ref, seeds) ->
    95% interval of the seed-averaged AUC(variant) - AUC(ref), resampling test USERS with replacement (rows of
    one user are not independent draws). All comparisons share the same draws."""
    first = predictions[predictions.seed == predictions.seed.iloc[0]]
    first = first[(first.variant == first.variant.iloc[0])].sort_values("row")
    y = first["label"].to_numpy()
    users, uniq = pd.factorize(first["user_id"])
    n_users = len(uniq)
    matrices = {(v, int(s)): pair_counts(y, g.sort_values("row")["p"].to_numpy(np.float64), users, n_users)
                for (v, s), g in predictions.groupby(["variant", "seed"], observed=True)}
    pos = np.bincount(users, weights=y, minlength=n_users)
    neg = np.bincount(users, minlength=n_users) - pos
    counts = np.random.default_rng(seed).multinomial(n_users, np.full(n_users, 1 / n_users), size=n_boot) \
        .astype(np.float64)  # draw b holds user u counts[b, u] times
    pairs = (counts @ pos) * (counts @ neg)  # 0 when a draw holds one class only: its AUC is undefined

    def interval(variant: str, ref: str, seeds: list[int], level: float = LEVEL) -> tuple[float, float]:
        seeds = [s for s in seeds if (variant, s) in matrices and (ref, s) in matrices]
        if not seeds:
            return float("nan"), float("nan")
        diff = sum(matrices[variant, s] - matrices[ref, s] for s in seeds) / len(seeds)
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = ((counts @ diff) * counts).sum(axis=1) / pairs
        draws = draws[np.isfinite(draws)]
        if not len(draws):
            return float("nan"), float("nan")
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    return interval


def judge(low: float, high: float) -> str:
    """'beats' only when the whole interval is above 0, 'worse' when below, else 'within noise'."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return "beats" if low > 0 else "worse" if high < 0 else "within noise"


def paired_differences(results: pd.DataFrame, predictions: pd.DataFrame | None = None,
                       n_boot: int = N_BOOT, level: float = LEVEL) -> pd.DataFrame:
    """One row per (backbone, variant, ref, why) of `comparisons`: delta = mean over seeds of the per-seed test-AUC
    difference (same splits, same seed), wins, the paired t interval over seeds (t_low, t_high), the user
    bootstrap interval (boot_low, boot_high; nan without predictions) and the verdict, read off the bootstrap
    interval when there is one, else off the t interval."""
    rows = []
    for backbone, sub in results.groupby("backbone", sort=False):
        table = sub.pivot_table(index="seed", columns="variant", values="test_auc")
        preds = None if predictions is None else predictions[predictions.backbone == backbone]
        boot = user_bootstrap(preds, n_boot) if preds is not None and len(preds) else None
        for variant, ref, why in comparisons(results, backbone):
            diff = (table[variant] - table[ref]).dropna()
            t_low, t_high = t_interval(diff.to_numpy(), level)
            b_low, b_high = boot(variant, ref, [int(s) for s in diff.index], level) if boot else (math.nan,) * 2
            use_boot = not math.isnan(b_low)
            rows.append({"backbone": backbone, "variant": variant, "ref": ref, "why": why, "seeds": len(diff),
                         "delta": float(diff.mean()) if len(diff) else math.nan,
                         "wins": f"{int((diff > 0).sum())}/{len(diff)}", "t_low": t_low, "t_high": t_high,
                         "boot_low": b_low, "boot_high": b_high,
                         "verdict": judge(b_low, b_high) if use_boot else judge(t_low, t_high),
                         "by": "users bootstrap" if use_boot else "paired t"})
    return pd.DataFrame(rows)


def verdict(diffs: pd.DataFrame, backbones: list[str]) -> str:
    """The report's first line, like for like: per backbone, the LLM-derived variants whose 95% interval is above 0
    against BOTH their no-LLM twin and the best no-LLM variant (chosen on valid), with the lift over the latter; or
    plainly "no LLM lift", with the closest LLM variant's difference and interval."""
    def ci(r) -> str:
        low, high = (r.boot_low, r.boot_high) if r.by == "users bootstrap" else (r.t_low, r.t_high)
        return f"{r.delta:+.4f} {_ci(low, high)}"

    won, lost, undecided = [], [], []
    for backbone in backbones:
        sub = diffs[diffs.backbone == backbone] if len(diffs) else diffs
        vs_best = sub[sub.why.str.contains("best no-LLM")] if len(sub) else sub
        if vs_best.empty:
            undecided.append(f"{backbone}: needs an LLM-derived and a no-LLM variant")
            continue
        if (vs_best.verdict == "n/a").all():
            undecided.append(f"{backbone}: no interval with one seed and no test predictions")
            continue
        best = vs_best.ref.iloc[0]
        winners = []
        for r in vs_best.itertuples():
            twin = sub[(sub.variant == r.variant) & sub.why.str.contains("twin")]
            if r.verdict == "beats" and (twin.verdict == "beats").all():
                winners.append(r)
        if winners:
            won.append(f"{backbone}: " + ", ".join(f"{r.variant} {ci(r)} over {best}" for r in winners))
        else:
            close = vs_best.sort_values("delta", ascending=False).iloc[0]
            lost.append(f"{backbone} (best no-LLM {best}; closest {close.variant} {ci(close)})")
    parts = []
    if won:
        parts.append("LLM lift beyond noise — " + "; ".join(won))
    if lost:
        parts.append(("no LLM lift on " if won else "no LLM lift: no LLM-derived variant beats its no-LLM twin and "
                      "the best no-LLM variant beyond noise on ") + ", ".join(lost))
    head = "Verdict: " + ("; ".join(parts) if parts else "n/a")
    if undecided:
        head += " (n/a on " + "; ".join(undecided) + ")"
    by = "users bootstrap" if len(diffs) and (diffs["by"] == "users bootstrap").any() else "paired t over seeds"
    seeds = int(diffs["seeds"].max()) if len(diffs) else 0
    return (f"**{head}** (Δ test AUC [{LEVEL:.0%} interval, {by}], paired on the same splits and seeds; an LLM "
            f"variant must beat its twin and the best no-LLM variant, chosen on valid AUC; {seeds} seed(s); see "
            "'Paired differences')")


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

        def per_entity(g: Mapping) -> str:  # tokens per LLM call: what a token budget and a bounded prompt cut
            calls = g.get("generated", g.get("prompts"))
            return _fmt(g["output_tokens"] / calls, 1) if calls and g.get("output_tokens") is not None else "n/a"

        out += _table(["side", *cols, "output_tokens_per_call"],
                      [[side, *[_fmt((g or {}).get(c), 2) for c in cols], per_entity(g or {})]
                       for side, g in gen.items()])
    else:
        out.append("n/a")
    modes = stats.get("prompt_mode") or {}
    if modes:
        out.append("\nPrompt mode: " + "; ".join(
            f"{side} `{m.get('template')}`, {m.get('mode')}"
            + (f" (source text: {', '.join(m['source_text'])})" if m.get("source_text") else "")
            for side, m in modes.items()))
    probe = stats.get("encoder_probe") or {}
    if probe.get("rows"):
        k = probe.get("k")
        out += ["", f"## Encoder probe: item-neighbour recall@{k} against training co-occurrence", "",
                f"{_fmt(probe.get('pairs'))} co-occurring item pairs from training positives; each item's {k} nearest "
                "items by cosine, the share of its partners among them (augment/encode/encoder_probe.py).", ""]
        out += _table(["encoder", "text", "items", f"recall@{k}"],
                      [[r["encoder"], r["text"], r["items"], _fmt(r.get(f"recall@{k}"))] for r in probe["rows"]])
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


def _ci(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"


def _diff_table(diffs: pd.DataFrame) -> list[str]:
    if diffs.empty:
        return ["n/a"]
    body = [[r.backbone, r.variant, r.ref, r.why, f"{r.delta:+.4f}", r.wins, _ci(r.t_low, r.t_high),
             _ci(r.boot_low, r.boot_high), r.verdict] for r in diffs.itertuples()]
    return _table(["backbone", "variant", "vs", "as", "Δ test AUC", "seeds won", f"{LEVEL:.0%} CI paired t (seeds)",
                   f"{LEVEL:.0%} CI bootstrap (test users)", "verdict"], body)


def _variance_lines(summary: pd.DataFrame, gen: Mapping | None) -> list[str]:
    """Two sources of noise, kept apart: retraining with another seed, and generating the LLM text again."""
    std = summary.loc[summary["seeds"] > 1, "test_auc_std"].dropna()
    train = (f"median {std.median():.4f} (range {std.min():.4f}-{std.max():.4f}) over {len(std)} backbone x "
             f"variant cells, {int(summary['seeds'].max())} seeds each" if len(std) else "n/a (one seed)")
    lines = [f"- Training-seed variance (std of test AUC over seeds, same features): {train}"]
    if not gen:
        return lines + ["- Generation-run variance: n/a (run `python -m augment generation-variance`)"]
    seeds, kind = gen.get("seeds"), gen.get("kind", "item")
    n_seeds = len(seeds) if isinstance(seeds, (list, tuple)) else seeds
    return lines + [
        f"- Generation-run variance ({kind} text, {gen.get('sample')} {kind}s x {n_seeds} sampling seeds at "
        f"T={gen.get('temperature')}): {_fmt(100 * float(gen.get('identical_fraction', math.nan)), 0)}% of texts "
        f"identical; same-{kind} vector cosine {_fmt(gen.get('mean_pairwise_cosine'), 2)} "
        f"(min {_fmt(gen.get('min_pairwise_cosine'), 2)}) vs {_fmt(gen.get('between_item_cosine'), 2)} between "
        f"different {kind}s"]


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
    window = decision.get("window")
    if window:
        n = window["intervals"]
        held = ("the champion trained on some of them, which favours it"
                if window.get("champion_trained_on_window") else "held out from both models")
        rows = (f"{window['rows']} rows of the gate's window ({n} interval{'s' if n > 1 else ''}, "
                f"{window['from']} to {window['to']}: {held})")
    else:
        rows = "newest interval's rows" if decision.get("gate_rows") == "test" else "valid rows"
    rule = decision.get("rule", "margin")
    out.append(f"- rule: {rule.replace('_', '-')}, margin {decision.get('margin')}; both scored on the same {rows}")
    return out


def _speed_section(results: pd.DataFrame) -> list[str]:
    if "rows_per_second" not in results:
        return []
    g = results.groupby(["backbone", "variant"], sort=False)[["rows_per_second", "train_seconds"]].mean()
    body = [[b, v, _fmt(float(r.rows_per_second), 0), _fmt(float(r.train_seconds), 1)]
            for (b, v), r in g.iterrows()]
    return ["", "## Training speed (this run)", ""] + _table(["backbone", "variant", "rows/s", "train s"], body)


def render_markdown(results: pd.DataFrame, stats: Mapping, png_name: str | None = "report.png",
                    predictions: pd.DataFrame | None = None) -> str:
    summary = summarize(results)
    diffs = paired_differences(results, predictions)
    lines = [verdict(diffs, list(dict.fromkeys(results.backbone))), "", "# CTR retraining report", "",
             "## Ablation: test AUC (mean ± std over seeds; each model chosen on valid, test read once)", ""]
    lines += _ablation_table(summary)
    lines += ["", "## Paired differences: each variant vs base; each LLM-derived one also vs its no-LLM twin and "
                  "the best no-LLM variant", "",
              "The twin is the same treatment with raw text in place of LLM text (train.variant_defs.<v>.twin); the "
              "best no-LLM variant of a backbone is the one with the highest mean valid AUC. "
              f"Same test rows and seed for both arms; Δ = mean over seeds of the per-seed AUC difference. The "
              f"bootstrap resamples test users ({N_BOOT} draws, seed-averaged difference per draw). Verdict from "
              f"the bootstrap interval when test predictions exist, else from the t interval: 'beats' = interval "
              f"above 0, 'within noise' = it crosses 0, 'worse' = below 0.", ""]
    lines += _diff_table(diffs)
    lines += ["", f"Caveat: {len(diffs)} comparisons at {LEVEL:.0%} each, not corrected for multiplicity: about 1 "
                  f"in 20 intervals misses 0 by chance alone, so a lone 'beats' is a lead to re-run, not a result.",
              "", "## Variance", ""]
    lines += _variance_lines(summary, stats.get("generation_variance"))
    lines += ["", "## All metrics", ""]
    header = ["backbone", "variant", "groups", "seeds", "valid AUC", "valid LogLoss", "valid GAUC", "test AUC",
              "test LogLoss", "test GAUC", "best iter", "train s"]
    body = [[r["backbone"], r["variant"], r.get("groups") or "-", int(r["seeds"]),
             *[_cell(r, m) for m in METRICS], _fmt(r.get("best_iteration"), 1), _fmt(r.get("train_seconds"), 1)]
            for _, r in summary.iterrows()]
    lines += _table(header, body)
    if "hit_cap" in results and results["hit_cap"].any():
        capped = results[results["hit_cap"].astype(bool)]
        lines += ["", f"**{len(capped)} of {len(results)} models ran to their iteration cap** (train.lgbm_rounds / "
                      f"train.deepfm_epochs) instead of stopping early on valid: "
                      + ", ".join(sorted({f"{b}/{v}" for b, v in zip(capped.backbone, capped.variant)}))
                      + ". Raise the cap and retrain before reading their AUC as final."]
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


def read_predictions(run_dir: Path) -> pd.DataFrame | None:
    """<run dir>/test_predictions.parquet (train_variants), or None (runs from before it was written)."""
    path = Path(run_dir) / PREDICTIONS
    return pd.read_parquet(path) if path.is_file() else None


def write_report(out_dir: Path, results: pd.DataFrame, stats: Mapping,
                 predictions: pd.DataFrame | None = None) -> Path:
    """Write report.md and report.png into out_dir; return the report.md path. `predictions` (test predictions
    of every model, train_variants.predictions_frame) enable the user bootstrap."""
    if results.empty:
        raise ValueError("write_report: results table is empty")
    missing = [c for c in ["backbone", "variant", *METRICS] if c not in results.columns]
    if missing:
        raise ValueError(f"write_report: results lack column(s) {missing}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, stats or {}, out_dir / "report.png")
    return atomic_write_text(out_dir / "report.md", render_markdown(results, stats or {}, predictions=predictions))
