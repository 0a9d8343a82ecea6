"""Valid AUC against output tokens: the main job's bootstrap run (configs/ml100k.yaml, the real DAGs through
scripts/run_dags.py --replay 0) at several generation budgets (max_tokens per item / user), one after the other
on the same machine, each in its own workdir. The figures that choose generation.sampling.max_tokens_*.

For each budget it prints the output tokens per LLM call (items, users), the share of answers cut at the budget,
the generation seconds, and the valid / test AUC (mean over the run's seeds) of every variant the bootstrap
retrain trained: the LLM variants next to their no-LLM twins, which do not depend on the budget (a check that the
runs are comparable). Writes a JSON and a plot (valid AUC of the LLM variants against tokens per call).

    python bench/generation/bench_token_curve.py [--budgets 16:16 24:24 40:48 64:64] [--config configs/ml100k.yaml]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]


def budget_config(base: Path, item: int, user: int, root: Path) -> Path:
    cfg = yaml.safe_load(base.read_text())
    workdir = root / f"tokens-{item}-{user}"
    cfg["workdir"] = str(workdir)
    cfg["generation"]["sampling"].update({"max_tokens_item": item, "max_tokens_user": user})
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def generation_stats(workdir: Path) -> dict:
    out = {}
    for kind in ("item", "user"):
        files = sorted((workdir / "stats").rglob(f"generate-{kind}-*.json"))  # daily: stats/end=<interval>/
        rows = [json.loads(f.read_text()) for f in files]
        calls = sum(r.get("llm_calls", 0) for r in rows)
        tokens = sum(r.get("output_tokens", 0) for r in rows)
        cut = sum(r.get("flags", {}).get("truncated", 0) for r in rows)
        made = sum(r.get("generated", 0) for r in rows)
        out[kind] = {"calls": calls, "tokens_per_call": tokens / calls if calls else float("nan"),
                     "truncated_share": cut / made if made else float("nan"),
                     "generation_seconds": sum(r.get("generation_seconds", 0.0) for r in rows)}
    return out


def auc_table(workdir: Path) -> pd.DataFrame:
    runs = sorted((workdir / "registry" / "ctr").glob("*/results.parquet"), key=lambda f: f.stat().st_mtime)
    if not runs:
        raise SystemExit(f"error: {workdir}: no retrain run")
    res = pd.read_parquet(runs[-1])  # a retried task may leave an earlier run: the newest is the run's result
    return res.groupby(["backbone", "variant"])[["valid_auc", "test_auc"]].mean().reset_index()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "ml100k.yaml")
    p.add_argument("--budgets", nargs="+", default=["16:16", "24:24", "40:48", "64:64"], help="ITEM:USER tokens")
    p.add_argument("--root", type=Path, default=REPO / "var" / "token-curve")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "generation" / "results_token_curve.json")
    p.add_argument("--collect-only", action="store_true",
                   help="do not run: read the budgets' finished workdirs under --root (their wall time: unknown)")
    args = p.parse_args(argv)
    rows = []
    for budget in args.budgets:
        item, user = (int(x) for x in budget.split(":"))
        path = budget_config(args.config, item, user, args.root)
        workdir = path.parent
        print(f"[token-curve] budget item {item} / user {user}: {workdir}", flush=True)
        started = time.perf_counter()
        if not args.collect_only:
            with open(workdir / "run_dags.log", "w") as log:
                rc = subprocess.run([sys.executable, str(REPO / "scripts" / "run_dags.py"), "--config", str(path),
                                     "--replay", "0"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}).returncode
            if rc:
                print(f"error: run_dags.py exited {rc} (see {workdir / 'run_dags.log'})", file=sys.stderr)
                return 1
        wall = float("nan") if args.collect_only else time.perf_counter() - started
        gen = generation_stats(workdir)
        aucs = auc_table(workdir)
        rows.append({"item_budget": item, "user_budget": user, "wall_seconds": round(wall, 1), "generation": gen,
                     "auc": aucs.to_dict(orient="records")})
        print(f"[token-curve] done in {wall:.0f} s: item {gen['item']['tokens_per_call']:.1f} tok/call, "
              f"user {gen['user']['tokens_per_call']:.1f} tok/call", flush=True)
    args.out.write_text(json.dumps({"config": str(args.config), "runs": rows}, indent=2))
    variants = sorted({a["variant"] for r in rows for a in r["auc"]})
    head = ["budget item/user", "tok/call item", "tok/call user", "cut item", "cut user", "gen s", "wall s"]
    print("| " + " | ".join(head + [f"valid {v}" for v in variants]) + " |")
    print("|" + "---|" * (len(head) + len(variants)))
    for r in rows:
        g = r["generation"]
        valid = {a["variant"]: a["valid_auc"] for a in r["auc"]}
        cells = [f"{r['item_budget']}/{r['user_budget']}", f"{g['item']['tokens_per_call']:.1f}",
                 f"{g['user']['tokens_per_call']:.1f}", f"{g['item']['truncated_share']:.0%}",
                 f"{g['user']['truncated_share']:.0%}",
                 f"{g['item']['generation_seconds'] + g['user']['generation_seconds']:.0f}", f"{r['wall_seconds']:.0f}"]
        print("| " + " | ".join(cells + [f"{valid.get(v, float('nan')):.4f}" for v in variants]) + " |")
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def plot(rows: list[dict], target: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    tokens = [(r["generation"]["item"]["tokens_per_call"] * r["generation"]["item"]["calls"]
               + r["generation"]["user"]["tokens_per_call"] * r["generation"]["user"]["calls"])
              / max(1, r["generation"]["item"]["calls"] + r["generation"]["user"]["calls"]) for r in rows]
    for variant in sorted({a["variant"] for r in rows for a in r["auc"]}):
        ys = [next((a["valid_auc"] for a in r["auc"] if a["variant"] == variant), float("nan")) for r in rows]
        ax.plot(tokens, ys, marker="o", ls="-" if variant.startswith("llm") else ":", label=variant)
    ax.set_xlabel("output tokens per LLM call (bootstrap, items + users)")
    ax.set_ylabel("valid AUC (mean over seeds)")
    ax.set_title("ML-100K bootstrap: valid AUC against generation budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
