"""Command line for models/.

    python -m models retrain --config configs/ml100k.yaml [--set train.seeds=[0,1,2]]
    python -m models report --results var/models/results.parquet --stats var/stats.json --out var/report

Timing train_variants at MovieLens scale on synthetic data: bench/models/bench_train_variants.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    import pandas as pd

    from models.report import write_report

    for path in (args.results, args.stats):
        if path is not None and not Path(path).is_file():
            raise SystemExit(f"python -m models report: no such file {path}")
    results = pd.read_parquet(args.results)
    try:
        stats = json.loads(Path(args.stats).read_text()) if args.stats else {}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{args.stats}: not valid JSON ({exc})") from exc
    print(write_report(Path(args.out), results, stats))
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from augment.__main__ import parse_overrides
    from augment.config import load_config
    from models.retrain import retrain

    cfg = load_config(args.config, parse_overrides(args.set))
    out = retrain(cfg)
    print(json.dumps(out, indent=1, default=str))
    print(f"report: {out['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="render report.md + report.png from results and run stats")
    rep.add_argument("--results", required=True, type=Path, help="results.parquet from train_variants")
    rep.add_argument("--stats", type=Path, help="stats.json (rows, generation, stages, ...)")
    rep.add_argument("--out", required=True, type=Path)
    rep.set_defaults(func=_report)
    ret = sub.add_parser("retrain", help="build the CTR dataset from the feature store, train, report")
    ret.add_argument("--config", required=True)
    ret.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ret.set_defaults(func=_retrain)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "retrain" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
