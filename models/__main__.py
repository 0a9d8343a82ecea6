"""Command line for models/.

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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
