"""What are fresh features worth to a champion the gate kept? For every interval of a daily workdir after which
the gate kept the champion, that model served the next interval either with the feature versions it was trained on
(before models/feature_refresh.py) or with the kept run's compatible versions (now). Both are scored on the next
interval's rows (the traffic they would have served, labels from the next run), paired; the bootstrap interval of
the difference says whether it is beyond noise. Intervals where the gate promoted have nothing to refresh.

    python bench/models/fresh_features.py --workdir var/ml100k [--out results.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from configs import RunConfig
from feature_store.locations import open_run_store
from models.dataset_builder import build_ctr_dataset
from models.feature_refresh import refresh_pins
from models.metrics import auc, paired_auc_diff
from models.registry import ScoringModel, load_model, registry_root
from models.retrain import interval_config, make_valid_scorer
from models.run_history import read_history


def _run(work: Path, run_id: str) -> tuple[RunConfig, dict]:
    run = json.loads((registry_root(work) / "ctr" / run_id / "run.json").read_text())
    return RunConfig.model_validate({**run["config"], "workdir": str(work)}), run["feature_tables"]


def interval_rows(work: Path) -> list[dict]:
    out = []
    rows = read_history(work).to_dict(orient="records")
    for kept, nxt in zip(rows, rows[1:]):
        if kept["promoted"] or not isinstance(kept.get("champion"), str):
            continue  # promoted: the new champion already pins this run's versions
        cfg, kept_versions = _run(work, kept["run_id"])
        store = open_run_store(cfg)
        champ = load_model(registry_root(work) / cfg.train.model_name / kept["champion"])
        fresh, refused = refresh_pins(store, champ.feature_tables, kept_versions)
        changed = sorted(t for t in fresh if fresh[t] != champ.feature_tables[t])
        next_cfg, next_versions = _run(work, nxt["run_id"])
        next_cfg = interval_config(next_cfg, store, next_versions)
        built = build_ctr_dataset(store, next_versions, [f for f in next_cfg.train.features if f.feature_group is None],
                                  threads=next_cfg.train.threads, history_len=next_cfg.train.history_len)
        # the rows served after the kept run's refresh: the next interval's
        served = (built.data.test.frame["timestamp"] >= pd.Timestamp(kept["end"])).to_numpy()
        got = {}
        for name, pins in (("trained", champ.feature_tables), ("fresh", fresh)):
            scores: dict = {}
            model = ScoringModel(champ.inner, {**champ.manifest, "feature_tables": pins}, champ.model_dir)
            make_valid_scorer(store, built, next_cfg, "test", scores)(model)
            got[name] = scores[str(champ.model_dir)]
        y = np.asarray(got["fresh"]["labels"])[served]
        p_fresh, p_trained = (np.asarray(got[k]["predictions"])[served] for k in ("fresh", "trained"))
        diff = paired_auc_diff(y, p_fresh, p_trained)
        out.append({"kept_at": str(kept["end"]), "served": str(nxt["end"]), "champion": kept["champion"],
                    "refreshed": changed, "refused": refused, "rows": int(served.sum()),
                    "auc_trained_features": auc(y, p_trained), "auc_fresh_features": auc(y, p_fresh),
                    "delta": diff["delta"], "low": diff["low"], "high": diff["high"]})
        r = out[-1]
        print(f"kept at {r['kept_at'][:10]}, served until {r['served'][:10]}: {r['champion']} refreshed "
              f"{changed or '-'}: AUC {r['auc_trained_features']:.4f} -> {r['auc_fresh_features']:.4f}, "
              f"{r['delta']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] on {r['rows']} rows", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = interval_rows(args.workdir)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
