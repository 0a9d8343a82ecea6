"""Is a variant's valid-to-test swing the model or the data? For every retrain run of a workdir (a daily replay
writes one per interval), each variant's lift over `base` on valid (mean over seeds) next to its lift on test with
the 95% bootstrap interval over test users (models/report.py), and how many users and rows the test holds.

A lift whose test interval covers its valid lift (and zero) is not a valid-to-test drop the model made: the test
interval is too small to tell. Issue 26 7(b): `llm_taste` lost 7 points from valid to test on the main job's newest
day while `base` gained 6.

    python bench/models/valid_test_gap.py --workdir var/ml100k [--ref base]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from models.report import read_predictions, user_bootstrap


def run_rows(run: Path, ref: str, n_boot: int) -> list[dict]:
    results = pd.read_parquet(run / "results.parquet")
    preds = read_predictions(run)
    manifest = json.loads((run / "run.json").read_text())
    out = []
    for backbone, sub in results.groupby("backbone", sort=False):
        valid = sub.pivot_table(index="seed", columns="variant", values="valid_auc")
        test = sub.pivot_table(index="seed", columns="variant", values="test_auc")
        p = None if preds is None else preds[preds["backbone"] == backbone]
        boot = user_bootstrap(p, n_boot) if p is not None and len(p) else None
        first = p[(p["variant"] == p["variant"].iloc[0]) & (p["seed"] == p["seed"].iloc[0])] if boot else None
        for v in valid.columns:
            if v == ref or ref not in valid:
                continue
            seeds = [int(s) for s in test.index]
            lo, hi = boot(v, ref, seeds) if boot else (float("nan"), float("nan"))
            out.append({"run": run.name, "rows": manifest.get("rows", {}), "backbone": backbone, "variant": v,
                        "valid": float(valid[v].mean()), "test": float(test[v].mean()),
                        "valid_lift": float((valid[v] - valid[ref]).mean()),
                        "test_lift": float((test[v] - test[ref]).mean()), "test_low": lo, "test_high": hi,
                        "test_users": int(first["user_id"].nunique()) if first is not None else None,
                        "covers_valid_lift": bool(lo <= (valid[v] - valid[ref]).mean() <= hi)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--ref", default="base")
    p.add_argument("--boot", type=int, default=2000)
    args = p.parse_args(argv)
    runs = sorted((args.workdir / "registry" / "ctr").glob("*/results.parquet"), key=lambda f: f.stat().st_mtime)
    if not runs:
        print(f"error: {args.workdir}: no retrain runs under registry/ctr", file=sys.stderr)
        return 2
    rows = [r for f in runs for r in run_rows(f.parent, args.ref, args.boot)]
    print(f"| run | test rows | test users | backbone | variant | valid | test | Δ valid vs {args.ref} | "
          f"Δ test vs {args.ref} [95% users bootstrap] | test interval covers Δ valid |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run'][:12]} | {r['rows'].get('test', '?')} | {r['test_users']} | {r['backbone']} | "
              f"{r['variant']} | {r['valid']:.4f} | {r['test']:.4f} | {r['valid_lift']:+.4f} | "
              f"{r['test_lift']:+.4f} [{r['test_low']:+.4f}, {r['test_high']:+.4f}] | "
              f"{'yes' if r['covers_valid_lift'] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
