"""Command line for models/.

    python -m models retrain --config configs/ml100k.yaml [--seeds 0 1 2] [--input users=<ver>] [--set k=v]
    python -m models report --results <run dir>/results.parquet --stats var/stats.json --out var/report
    python -m models registry ls --root var/ml100k [--name ctr]
    python -m models history --config configs/ml100k.yaml        # the daily runs so far; rewrites history.png
    python -m models refresh-features --config configs/ml100k.yaml --input user_profile_emb=<version>  # the champion
    python -m models promote --config configs/ml100k.yaml --model-dir var/ml100k/registry/ctr/<run>/<b>/<v>/seed=0
    # the full ablation (5 backbones x 6 variants x 5 seeds = 145 models; 3 seeds = 87 models took ~20-25 min on a
    # quiet 2-core box, so ~35-40 min; --seeds 0 1 2 is the cheaper run, with wider paired intervals):
    python -m models retrain --config configs/ml100k.yaml --seeds 0 1 2 3 4 \
        --set 'train.backbones=[lightgbm,deepfm,din,dcnmix,autoint]' \
        --set 'train.variants=[base,raw_text,llm_item,llm_user,llm,llm_kar]'

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

    from models.report import read_predictions, write_report

    for path in (args.results, args.stats, args.predictions):
        if path is not None and not Path(path).is_file():
            raise SystemExit(f"python -m models report: no such file {path}")
    results = pd.read_parquet(args.results)
    predictions = pd.read_parquet(args.predictions) if args.predictions else read_predictions(args.results.parent)
    try:
        stats = json.loads(Path(args.stats).read_text()) if args.stats else {}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{args.stats}: not valid JSON ({exc})") from exc
    print(write_report(Path(args.out), results, stats, predictions))
    return 0


def _pins(pairs: list[str]) -> dict[str, str]:
    """`--input TABLE=VERSION` pairs -> {table: version}."""
    from feature_store.pins import parse_pins

    return parse_pins(pairs, flag="--input")


def _versions(cfg, store, pairs: list[str]) -> dict[str, str]:
    """The CLI is for people: tables not pinned with --input take their `latest` (stages never do)."""
    from models.retrain import latest_versions

    return latest_versions(store, cfg, _pins(pairs))


class _DeprecatedVersion(argparse.Action):
    """`--version TABLE=VERSION`, the old name of `--input` (as in `python -m augment`): still works, says so."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: --version is deprecated, use --input TABLE=VERSION (same meaning)", file=sys.stderr)
        getattr(namespace, self.dest).append(values)


def _add_pin_flags(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--input", action="append", default=[], metavar="TABLE=VERSION", help=help)
    p.add_argument("--version", action=_DeprecatedVersion, dest="input", metavar="TABLE=VERSION",
                   help="deprecated name of --input")


def _retrain(args: argparse.Namespace) -> int:
    from configs import load_config, parse_overrides
    from feature_store.locations import open_run_store
    from models.retrain import retrain

    overrides = parse_overrides(args.set)
    if args.seeds:
        overrides["train.seeds"] = list(args.seeds)
    cfg = load_config(args.config, overrides)
    versions = _versions(cfg, open_run_store(cfg), args.input)
    out = retrain(cfg, versions)
    print(json.dumps(out, indent=1, default=str))
    print(f"report: {out['report']}")
    return 0


def _registry_ls(args: argparse.Namespace) -> int:
    import pandas as pd

    from models.registry import list_models

    table = list_models(args.root, args.name)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False) if len(table) else f"no models under {args.root}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from configs import load_config, parse_overrides
    from feature_store.locations import open_run_store
    from models.dataset_builder import build_ctr_dataset
    from models.registry import promote
    from models.retrain import interval_config, make_valid_scorer, paired_gate

    cfg = load_config(args.config, parse_overrides(args.set))
    store = open_run_store(cfg)
    versions = _versions(cfg, store, args.input)
    cfg = interval_config(cfg, store, versions)
    part = "test" if cfg.stream is not None else "valid"  # a daily run gates on its newest interval
    # the gate needs only this run's valid rows: labels + base features
    built = build_ctr_dataset(store, versions, [f for f in cfg.train.features if f.feature_group is None],
                              threads=cfg.train.threads, history_len=cfg.train.history_len)
    margin = cfg.train.promotion_margin if args.margin is None else args.margin
    scores: dict = {}
    decision = promote(cfg.workdir_path, cfg.train.model_name, args.model_dir,
                       make_valid_scorer(store, built, cfg, part, scores), margin=margin, force=args.force, on=part,
                       rule=args.rule or cfg.train.promotion_rule, paired=paired_gate(scores))
    print(json.dumps(decision, indent=1, default=str))
    return 0 if decision["promoted"] else 3


def _refresh_features(args: argparse.Namespace) -> int:
    from configs import load_config, parse_overrides
    from feature_store.locations import open_run_store
    from models.feature_refresh import refresh_champion
    from models.registry import champion_info

    cfg = load_config(args.config, parse_overrides(args.set))
    champ = champion_info(cfg.workdir_path, cfg.train.model_name)
    if champ is None:
        print(f"error: no champion promoted for {cfg.train.model_name!r} under {cfg.workdir_path}", file=sys.stderr)
        return 2
    record = refresh_champion(cfg.workdir_path, cfg.train.model_name, champ["model_path"], open_run_store(cfg),
                              _pins(args.input))
    print(json.dumps(record, indent=1))
    for table, why in record["refused"].items():
        print(f"refused: {why}", file=sys.stderr)
    return 4 if record["refused"] else 0


def _history(args: argparse.Namespace) -> int:
    from configs import load_config
    from models.run_history import write_history

    cfg = load_config(args.config)
    md, png = write_history(cfg.workdir_path)
    print(md.read_text())
    print(f"plot: {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="render report.md + report.png from results and run stats")
    rep.add_argument("--results", required=True, type=Path, help="results.parquet from train_variants")
    rep.add_argument("--stats", type=Path, help="stats.json (rows, generation, stages, ...)")
    rep.add_argument("--predictions", type=Path, help="test predictions of every model, for the bootstrap over "
                     "test users (default: test_predictions.parquet beside --results, if there)")
    rep.add_argument("--out", required=True, type=Path)
    rep.set_defaults(func=_report)
    ret = sub.add_parser("retrain", help="build the CTR dataset from the feature store, train, report")
    ret.add_argument("--config", required=True)
    ret.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ret.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                     help="training seeds (= --set 'train.seeds=[...]'; default: the config's train.seeds, "
                          "built in 0 1 2 3 4): every backbone x variant trains once per seed; the report's "
                          "paired t interval is over them")
    _add_pin_flags(ret, "read this exact table version (repeatable); unpinned tables use their latest")
    ret.set_defaults(func=_retrain)
    reg = sub.add_parser("registry", help="inspect the model registry")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True)
    ls = reg_sub.add_parser("ls", help="list registered models and the champion")
    ls.add_argument("--root", required=True, help="workdir (holding registry/) or the registry root")
    ls.add_argument("--name", default=None)
    ls.set_defaults(func=_registry_ls)
    pro = sub.add_parser("promote", help="run the promotion gate for one registered model (exit 3 = kept)")
    pro.add_argument("--config", required=True)
    pro.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    _add_pin_flags(pro, "valid rows from this interaction_splits version etc. (repeatable; default latest)")
    pro.add_argument("--model-dir", required=True, type=Path)
    pro.add_argument("--margin", type=float, default=None, help="default: train.promotion_margin")
    pro.add_argument("--rule", choices=["margin", "superiority", "non_inferiority"], default=None,
                     help="default: train.promotion_rule")
    pro.add_argument("--force", action="store_true", help="promote even if the gate fails (logged as forced)")
    pro.set_defaults(func=_promote)
    ref = sub.add_parser("refresh-features", help="serve the champion with newer compatible feature versions, "
                         "no retrain (exit 4 if one was refused as incompatible)")
    ref.add_argument("--config", required=True)
    ref.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    _add_pin_flags(ref, "a newer version of a table the champion pins (repeatable)")
    ref.set_defaults(func=_refresh_features)
    his = sub.add_parser("history", help="the daily runs so far: <workdir>/history.md and history.png")
    his.add_argument("--config", required=True)
    his.set_defaults(func=_history)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "retrain" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from models.retrain import MissingTables

    try:
        return args.func(args)
    except MissingTables as exc:  # bad input, not a crash: one line, exit 2 (as `python -m augment` does)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
