"""Start the scoring service on the promoted model of a workdir (one uvicorn worker, 1 torch/LightGBM thread):

    python -m models.serving --workdir var/ml100k --port 8000 [--host 127.0.0.1] [--name ctr] \
        [--max-candidates 500] [--poll-seconds 2] [--feature-store s3://bucket/prefix]

    curl -s localhost:8000/score -H 'content-type: application/json' -d '{"user_id": 1, "item_ids": [1, 2, 3]}'

The service polls <workdir>/registry/<name>/champion.json every --poll-seconds (or on POST /admin/reload) and
swaps in a newly promoted model without dropping requests. Scale out with more processes (each loads its own copy),
not more threads: scoring is CPU-bound and holds the GIL.

Features come from where the champion's manifest says the retrain read them (an object store it recorded, e.g.
s3://bucket/features, with its endpoint and region; credentials from the environment), else
<workdir>/feature_store; --feature-store URI overrides both (e.g. a replica of the bucket).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from models.serving.settings import ServingSettings, default  # light: no model library yet

    p = argparse.ArgumentParser(prog="python -m models.serving", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, type=Path, help="holds registry/ (and feature_store/ when local)")
    p.add_argument("--feature-store", help="read the pinned versions here (a directory or s3://bucket/prefix, "
                   "options in the URI: ?endpoint_override=...); default: as the model manifest records")
    p.add_argument("--name", default=default("name"), help="registry model name (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-candidates", type=int, default=default("max_candidates"))
    p.add_argument("--poll-seconds", type=float, default=default("poll_seconds"),
                   help="champion check interval; 0 = admin only")
    p.add_argument("--threads", type=int, default=default("threads"))
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if not (args.workdir / "registry").is_dir():
        raise SystemExit(f"python -m models.serving: {args.workdir} has no registry/ "
                         "(run `python -m models retrain` first)")
    # before torch / LightGBM start their OpenMP pools
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from models.serving.app import create_app

    app = create_app(ServingSettings(args.workdir, args.name, args.max_candidates, args.poll_seconds,
                                     args.threads, args.feature_store))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
