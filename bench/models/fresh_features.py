"""What are fresh features worth to a champion the gate kept? For every interval of a daily workdir that had a
champion, the champion is scored on that interval's gate window twice: with the feature versions it was trained on
(what it served before models/feature_refresh.py) and with that interval's compatible versions (what it serves
now), on the same rows; the paired bootstrap interval of the difference says whether it is beyond noise.

    python bench/models/fresh_features.py --workdir var/ml100k [--out bench/models/results_fresh_features.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from configs import RunConfig
from feature_store.locations import open_run_store
from models.dataset_builder import build_ctr_dataset
from models.feature_refresh import refresh_pins
from models.metrics import paired_auc_diff
from models.registry import ScoringModel, load_model, registry_root
from models.retrain import interval_config, make_valid_scorer
from models.run_history import read_history


def interval_rows(work: Path) -> list[dict]:
    out = []
    for row in read_history(work).to_dict(orient="records"):
        if not isinstance(row.get("champion"), str):
            continue  # the bootstrap: no champion yet
        run = json.loads((registry_root(work) / "ctr" / row["run_id"] / "run.json").read_text())
        cfg = RunConfig.model_validate({**run["config"], "workdir": str(work)})  # wherever the workdir is now
        store = open_run_store(cfg)
        versions = run["feature_tables"]
        cfg = interval_config(cfg, store, versions)
        champ = load_model(registry_root(work) / cfg.train.model_name / row["champion"])
        fresh, refused = refresh_pins(store, champ.feature_tables, versions)
        changed = sorted(t for t in fresh if fresh[t] != champ.feature_tables[t])
        built = build_ctr_dataset(store, versions, [f for f in cfg.train.features if f.feature_group is None],
                                  threads=cfg.train.threads, history_len=cfg.train.history_len)
        got = {}
        for name, pins in (("trained", champ.feature_tables), ("fresh", fresh)):
            scores: dict = {}
            model = ScoringModel(champ.inner, {**champ.manifest, "feature_tables": pins}, champ.model_dir)
            make_valid_scorer(store, built, cfg, "test", scores)(model)
            got[name] = scores[str(champ.model_dir)]
        diff = paired_auc_diff(got["fresh"]["labels"], got["fresh"]["predictions"], got["trained"]["predictions"])
        out.append({"end": str(row["end"]), "champion": row["champion"], "refreshed": changed, "refused": refused,
                    "rows": got["fresh"]["rows"], "auc_trained_features": got["trained"]["auc"],
                    "auc_fresh_features": got["fresh"]["auc"], "delta": diff["delta"], "low": diff["low"],
                    "high": diff["high"]})
        print(f"{out[-1]['end']}: {row['champion']} refreshed {changed or '-'}: AUC {got['trained']['auc']:.4f} -> "
              f"{got['fresh']['auc']:.4f}, {diff['delta']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}] on "
              f"{got['fresh']['rows']} rows", flush=True)
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
