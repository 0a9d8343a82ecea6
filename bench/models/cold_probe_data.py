"""Books-shaped cold-user data from ml-latest-small: string ids, implicit reads only, ~20k positives.

The held-out books measurement of issue 13 (3,000 users, ~34k reads plus sampled negatives, string ids, titles as
text, users split 8:1:1) had every neural backbone at chance where LightGBM reached 0.63 with a history-derived
user vector. We cannot ship that data, so this makes its shape from what we have: ml-latest-small ratings >= 4.5
become "reads" (no ratings, no negatives: the pipeline samples them), ids become strings ("u12", "m345").

    python bench/models/cold_probe_data.py ../shared/data/ml-latest-small var/external/cold_probe
    # then configs/ml-latest-small-cold.yaml (ingest, split, encode item_raw, retrain)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from common.files import atomic_write_text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="the ml-latest-small directory (ratings.csv, movies.csv)")
    ap.add_argument("out", type=Path, help="directory for reads.csv and items.csv")
    ap.add_argument("--min-rating", type=float, default=4.5)
    args = ap.parse_args(argv)
    ratings = pd.read_csv(args.source / "ratings.csv")
    reads = ratings[ratings["rating"] >= args.min_rating]
    reads = pd.DataFrame({"user": "u" + reads["userId"].astype(str), "book": "m" + reads["movieId"].astype(str),
                          "ts": reads["timestamp"]})
    movies = pd.read_csv(args.source / "movies.csv")
    items = pd.DataFrame({"book": "m" + movies["movieId"].astype(str), "title": movies["title"],
                          "genres": movies["genres"]})
    items = items[items["book"].isin(reads["book"])]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "reads.csv", reads.to_csv(index=False))
    atomic_write_text(args.out / "items.csv", items.to_csv(index=False))
    print(f"{len(reads)} reads by {reads['user'].nunique()} users of {len(items)} items -> {args.out}")


if __name__ == "__main__":
    main()
