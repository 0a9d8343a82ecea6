"""Training throughput per backbone on 1 and 2 threads, and the KAR adaptor's overhead vs plain DenseFeat.

MovieLens-100K shape on synthetic data: ~60k train rows, 1.6k items, 940 users, 384-d item knowledge / user
preference vectors, history of 20. For each (backbone, threads) it times `--epochs` pure training passes
(forward + backward + Adam step, no validation) of the `llm` variant (both vectors as DenseFeat) and of `llm_kar`
(both through the adaptor); LightGBM times `--rounds` boosting rounds of `llm` (it has no adaptor).

    python bench/models/bench_backbones.py --out /tmp/bench_backbones [--threads 1 2] [--epochs 1]
Prints a table and writes <out>/bench_backbones.json. The machine is shared: run it when it is quiet, and read
figures as +-20%.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common.files import atomic_write_json
from configs import TrainConfig
from models import deepctr_compat as dc
from models.feature_spec import resolve_variants
from models.synthetic_ctr import make_ctr_data
from models.train_deepctr import DeepCtrModel


def deepctr_rows_per_s(data, variant, cfg: TrainConfig, backbone: str, epochs: int) -> float:
    dc.set_threads(cfg.threads)
    model = DeepCtrModel.build_for(data, variant, cfg, backbone, seed=0)
    x = model.input_matrix(data.train)
    y = torch.from_numpy(dc.as_label_array(data.train.frame[data.label]))
    optim = torch.optim.Adam(model.net.parameters(), lr=cfg.deepfm_lr)
    model.net.train()
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for s in range(0, len(x), cfg.deepfm_batch_size):
            idx = order[s:s + cfg.deepfm_batch_size]
            loss = F.binary_cross_entropy(model.net(x[idx]).reshape(-1), y[idx], reduction="sum")
            total = loss + model.net.get_regularization_loss()
            optim.zero_grad()
            total.backward()
            optim.step()
    return len(x) * epochs / (time.perf_counter() - started)


def lightgbm_rows_per_s(data, variant, cfg: TrainConfig, rounds: int) -> float:
    from models.train_lightgbm import train_lightgbm

    cfg = cfg.model_copy(update={"lgbm_rounds": rounds, "lgbm_early_stopping": rounds + 1})
    fit = train_lightgbm(data, variant, cfg, seed=0)
    return len(data.train) * fit.n_iterations / fit.train_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=75_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--kar-experts", type=int, nargs=2, default=None, metavar=("SHARED", "SPECIFIC"),
                    help="adaptor experts per type (default: TrainConfig's)")
    ap.add_argument("--backbones", nargs="+", default=["lightgbm", "deepfm", "din", "dcnmix", "autoint"])
    args = ap.parse_args()

    data = make_ctr_data(n_rows=args.rows, n_users=940, n_items=1600, dim=args.dim, latent_dim=16,
                         item_groups=("item_knowledge_emb", "item_raw_emb"), user_groups=("user_profile_emb",),
                         signal_group="item_knowledge_emb", user_signal_group="user_profile_emb",
                         signal_strength=1.0, history_len=20)
    v = resolve_variants(TrainConfig(), ["llm", "llm_kar"])
    rows = []
    for threads in args.threads:
        cfg = TrainConfig(threads=threads, sequence_backbones=("din", "autoint"))
        if args.kar_experts:
            cfg = cfg.model_copy(update={"kar_shared_experts": args.kar_experts[0],
                                         "kar_specific_experts": args.kar_experts[1]})
        for backbone in args.backbones:
            if backbone == "lightgbm":
                rows.append({"backbone": backbone, "threads": threads,
                             "dense_rows_per_s": lightgbm_rows_per_s(data, v["llm"], cfg, args.rounds)})
            else:
                dense = deepctr_rows_per_s(data, v["llm"], cfg, backbone, args.epochs)
                kar = deepctr_rows_per_s(data, v["llm_kar"], cfg, backbone, args.epochs)
                rows.append({"backbone": backbone, "threads": threads, "dense_rows_per_s": dense,
                             "kar_rows_per_s": kar, "kar_overhead": dense / kar - 1})
            print(json.dumps({k: round(x, 3) if isinstance(x, float) else x for k, x in rows[-1].items()}),
                  flush=True)
    kar_cfg = TrainConfig() if not args.kar_experts else None
    summary = {"kar_experts": args.kar_experts or [kar_cfg.kar_shared_experts, kar_cfg.kar_specific_experts],
               "train_rows": len(data.train), "dim": args.dim, "epochs": args.epochs, "lgbm_rounds": args.rounds,
               "batch_size": TrainConfig().deepfm_batch_size, "results": rows}
    atomic_write_json(args.out / "bench_backbones.json", summary)
    print(f"{'backbone':10} {'thr':>3} {'dense rows/s':>13} {'kar rows/s':>11} {'kar overhead':>12}")
    for r in rows:
        kar = f"{r['kar_rows_per_s']:11,.0f} {r['kar_overhead']:+12.1%}" if "kar_rows_per_s" in r else ""
        print(f"{r['backbone']:10} {r['threads']:>3} {r['dense_rows_per_s']:13,.0f} {kar}")


if __name__ == "__main__":
    main()
