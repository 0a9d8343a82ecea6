"""Command line for the augment stages (the same functions the Airflow DAG calls).

    python -m augment prepare-models
    python -m augment ingest --config configs/ml100k.yaml [--set data.sample_users=100]
    python -m augment all --config configs/ml100k.yaml        # every augment stage in order, no Airflow
    python -m augment split --config configs/ml100k.yaml --input interactions=3f2a9c0d1e4b
    python -m augment generate --config configs/ml100k.yaml --kind item [--shard 0]
    python -m augment serve-llm --config configs/ml100k.yaml [--host 127.0.0.1] [--port 8000]
        # vLLM's OpenAI server for generation.engine: a replica for generation.backend=openai (augment/llm/server.py)
    python -m augment structured-prompts --config configs/ml100k.yaml [--force]
    python -m augment publish-structured --config configs/ml100k.yaml --kind user_interest [--force]
    python -m augment behaviour-encoder --config configs/ml100k.yaml [--force]
        # encode.model fine-tuned on training co-occurrence pairs -> item_knowledge_emb_bt, item_raw_emb_bt
        # (augment/encode/behaviour_encoder.py); a no-op unless behaviour_encoder.enabled or --force
    python -m augment import-text --config configs/ml100k.yaml --kind item|user --file F [--source NAME]
    python -m augment encoder-probe --config configs/ml100k.yaml
        # candidate encoders ranked by item-neighbour recall@k against training co-occurrence
        # (augment/encode/encoder_probe.py; <workdir>/stats/encoder-probe.json, shown in the retrain report)
    python -m augment generation-variance --config configs/ml100k.yaml --sample 60 --seeds 3 --temperature 0.7
        # item text under k sampling seeds, encoded: the text's share of run-to-run variance
        # (augment/generation_variance.py; writes <workdir>/stats/generation_variance.json unless --out)
        # publish an existing text file (item_id|user_id, text[, event_timestamp]) as item_knowledge_text /
        # user_profile_text, validated like generated text; see augment/text/external_text.py
    # any stage: --input TABLE=VERSION pins an input table (repeatable); an input not pinned is read at its
    #            latest version, which the stage logs. --result-json PATH also writes the printed JSON result
    #            to PATH (what DAG tasks read back).

Exit codes: 0 ok, 2 bad input (one line on stderr naming file, row/key and column), 1 anything else.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import yaml


def resolve_inputs(store, needed: tuple[str, ...], pairs: list[str]) -> dict[str, str]:
    """--input TABLE=VERSION pairs, and `latest` (resolved now, and logged) for the needed tables not given: the
    one place where `latest` is read. Version prefixes are resolved like `python -m feature_store`."""
    from feature_store.pins import parse_pins

    given = parse_pins(pairs, flag="--input")
    unknown = sorted(set(given) - set(needed))
    if unknown:
        raise SystemExit(f"--input: this stage reads {list(needed)}, not {unknown}")
    out = {name: store.resolve(name, given.get(name, "latest")) for name in needed}
    for name in needed:
        if name not in given:
            logging.getLogger("augment").info("input %s: latest = %s", name, out[name])
    return out


def kind_choices(cmd: str) -> list[str] | None:
    """The --kind choices of a stage, from the registry of kinds (augment/kinds.py); None: it takes no --kind."""
    from augment import kinds

    of = {"generate": kinds.generated_kinds, "publish-texts": kinds.text_kinds,
          "import-text": kinds.importable_kinds, "publish-structured": kinds.structured_kinds,
          "encode": kinds.encode_kinds}.get(cmd)
    return None if of is None else kinds.names(of())


def build_parser() -> argparse.ArgumentParser:
    """The CLI; --kind choices come from the registry of kinds when it is built."""
    parser = argparse.ArgumentParser(prog="python -m augment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("ingest", "split", "prompts", "generate", "publish-texts", "encode", "all", "show-config",
                 "structured-prompts", "publish-structured", "import-text", "behaviour-encoder",
                 "generation-variance", "encoder-probe"):
        p = sub.add_parser(name)
        p.add_argument("--config", required=True)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        p.add_argument("--result-json", metavar="PATH", help="also write the JSON result here (atomically)")
        p.add_argument("--input", action="append", default=[], metavar="TABLE=VERSION",
                       help="exact version of an input table (default: its latest version)")
        if kind_choices(name) is not None:
            p.add_argument("--kind", choices=kind_choices(name), required=True)
        if name == "import-text":
            p.add_argument("--file", required=True, help="CSV or Parquet: item_id|user_id, text[, event_timestamp]")
            p.add_argument("--source", help="names the text's origin: model = external:<source> (default: file stem)")
        if name in ("generate", "structured-prompts", "publish-structured"):
            p.add_argument("--force", action="store_true",
                           help="run structured stages even when generation.structured.enabled is false")
        if name == "behaviour-encoder":
            p.add_argument("--force", action="store_true", help="run even when behaviour_encoder.enabled is false")
        if name == "generate":
            p.add_argument("--shard", type=int, default=None)
            p.add_argument("--num-shards", type=int, default=None,
                           help="shards this run splits the prompts into (default generation.shards)")
        if name == "generation-variance":
            # Defaults: generation_variance's own (None here means "not given"; the help shows them).
            import inspect

            from augment.generation_variance import generation_variance as gv

            gv_default = {k: v.default for k, v in inspect.signature(gv).parameters.items()}
            p.add_argument("--sample", type=int, help="item prompts (the smallest prompt hashes; default "
                           f"{gv_default['sample']})")
            p.add_argument("--seeds", type=int, help="k: sampling seeds sampling.seed .. +k-1 (default "
                           f"{gv_default['seeds']})")
            p.add_argument("--temperature", type=float, help=f"default {gv_default['temperature']}")
            p.add_argument("--out", help="default <workdir>/stats/generation_variance.json")
    sub.add_parser("prepare-models")
    serve = sub.add_parser("serve-llm", help="vLLM's OpenAI server for generation.engine (augment/llm/server.py)")
    serve.add_argument("--config", required=True)
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--print-command", action="store_true", help="print the server command and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        # Stop vLLM engines while the interpreter is whole: left to interpreter exit, a pooling engine's teardown
        # aborted the process ("terminate called without an active exception", exit 134) after a run that had
        # already written its result.
        engine = sys.modules.get("augment.llm.engine")
        if engine is not None:
            engine.shutdown_engines()


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from augment import stages
    from augment.data.errors import DataError
    from augment.llm.backend import BackendError
    from configs import load_config, parse_overrides
    from feature_store import SchemaError

    try:
        if args.cmd == "prepare-models":
            from augment.embedded_models import EMBEDDED_ENCODER, EMBEDDED_LLM, resolve_encoder, resolve_llm

            print(json.dumps({EMBEDDED_LLM: str(resolve_llm(EMBEDDED_LLM)),
                              EMBEDDED_ENCODER: str(resolve_encoder(EMBEDDED_ENCODER))}, indent=1))
            return 0
        cfg = load_config(args.config, parse_overrides(args.set))
        if args.cmd == "serve-llm":
            from augment.llm import server as llm_server
            if args.print_command:
                print(shlex.join(llm_server.server_command(cfg.generation.engine, args.host, args.port)))
                return 0
            return llm_server.serve(cfg.generation.engine, args.host, args.port)
        if args.cmd == "show-config":
            print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
            return 0
        if args.cmd == "all":
            result = stages.run_all(cfg)
        else:
            kind = getattr(args, "kind", None)
            needed = stages.stage_inputs(args.cmd, kind, cfg)
            if args.cmd == "encoder-probe":  # also the optional inputs the store holds
                from augment.encode.encoder_probe import OPTIONAL

                needed += tuple(t for t in OPTIONAL if t in stages.store_for(cfg).tables())
            inputs = resolve_inputs(stages.store_for(cfg), needed, args.input)
            if args.cmd == "generate":
                result = stages.generate(cfg, kind, inputs, args.shard, force=args.force,
                                         num_shards=args.num_shards)
            elif args.cmd == "structured-prompts":
                result = stages.structured_prompts(cfg, inputs, force=args.force)
            elif args.cmd == "publish-structured":
                result = stages.publish_structured(cfg, kind, inputs, force=args.force)
            elif args.cmd == "import-text":
                result = stages.import_text(cfg, kind, args.file, inputs, args.source)
            elif args.cmd == "publish-texts":
                result = stages.publish_texts(cfg, kind, inputs)
            elif args.cmd == "encode":
                result = stages.encode(cfg, kind, inputs)
            elif args.cmd == "behaviour-encoder":
                result = stages.behaviour_encoder(cfg, inputs, force=args.force)
            elif args.cmd == "generation-variance":
                from augment.generation_variance import generation_variance

                given = {k: getattr(args, k) for k in ("sample", "seeds", "temperature")
                         if getattr(args, k) is not None}
                result = generation_variance(cfg, inputs, out=Path(args.out) if args.out else None, **given)
            elif args.cmd == "encoder-probe":
                from augment.encode.encoder_probe import encoder_probe

                result = encoder_probe(cfg, inputs)
            elif args.cmd == "ingest":
                result = stages.ingest(cfg)
            else:
                result = getattr(stages, args.cmd)(cfg, inputs)
    except (DataError, SchemaError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:  # the LLM backend failed for good (its own retries are done): one line, exit 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # pydantic ValidationError is a ValueError: config problems are bad input too
        first = str(exc).strip().splitlines()
        print(f"error: {' '.join(first[:3])}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1, default=str)
    if getattr(args, "result_json", None):
        from common.files import atomic_write_text

        atomic_write_text(Path(args.result_json), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
