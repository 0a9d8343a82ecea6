"""Time train_variants at MovieLens scale on synthetic data: the default retrain job's backbones x the 6-variant
ablation x seeds (TrainConfig defaults unless given).

Real-run shape: ~75k CTR rows (train ~60k), ~1.6k items, ~940 users, 3 vector groups of 384-d, history of 20.

    OMP_NUM_THREADS=2 python bench/models/bench_train_variants.py --out /tmp/bench_models --threads 2 --seeds 0 1 2
Prints one JSON line (per-model timings, total seconds, peak RSS) and writes it to <out>/bench.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from common.files import atomic_write_json  # noqa: E402
from configs import TrainConfig  # noqa: E402
from models.feature_spec import resolve_variants  # noqa: E402
from models.report import read_predictions, write_report  # noqa: E402
from models.synthetic_ctr import make_ctr_data  # noqa: E402
from models.train_variants import train_variants  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=75_000)
    ap.add_argument("--users", type=int, default=940)
    ap.add_argument("--items", type=int, default=1_600)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--backbones", nargs="+", default=None, help="default: TrainConfig().backbones")
    ap.add_argument("--variants", nargs="+", default=None, help="default: TrainConfig().variants")
    args = ap.parse_args()

    t0 = time.perf_counter()
    data = make_ctr_data(n_rows=args.rows, n_users=args.users, n_items=args.items, dim=args.dim, latent_dim=16,
                         item_groups=["item_raw_emb", "item_knowledge_emb"], user_groups=["user_profile_emb"],
                         signal_group="item_knowledge_emb", user_signal_group="user_profile_emb",
                         signal_strength=1.0, user_signal_strength=0.5, seed=0)
    made = time.perf_counter() - t0
    cfg = TrainConfig(threads=args.threads, deepfm_epochs=args.epochs, seeds=tuple(args.seeds))
    if args.backbones:
        cfg = cfg.model_copy(update={"backbones": tuple(args.backbones)})
    variants = resolve_variants(cfg, args.variants)
    t1 = time.perf_counter()
    results = train_variants(data, variants, cfg, args.out)
    total = time.perf_counter() - t1
    cols = ["backbone", "variant", "valid_auc", "test_auc", "best_iteration", "n_iterations", "train_seconds",
            "rows_per_second", "predict_rows_per_second"]
    summary = {
        "backbones": list(cfg.backbones), "variants": list(variants), "seeds": list(cfg.seeds),
        "rows": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "threads": args.threads, "data_seconds": round(made, 2), "train_variants_seconds": round(total, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "models": results[cols].round(4).to_dict(orient="records"),
    }
    atomic_write_json(args.out / "bench.json", summary)
    write_report(args.out, results, {"rows": summary["rows"], "peak_rss_mb": summary["peak_rss_mb"],
                                     "stages": {"make_synthetic_data": made, "train_variants": total}},
                 read_predictions(args.out))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
