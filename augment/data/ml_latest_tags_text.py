"""MovieLens ml-latest tags.csv -> one item text per tagged movie, for `python -m augment import-text`.

Each movie's user tags are cleaned, merged case-insensitively, ordered by how many tag events they have (then by
first use) and capped, giving e.g. "Tagged by users as: atmospheric, thought-provoking, twist ending.".

event_timestamp is the time of the movie's last tag by default (`--time last`): the text only exists from then
on, so a point-in-time join never shows a rating a tag that was written after it (leak-free, but ratings older
than the tags get no text). `--time none` leaves it empty, so import-text dates it 1970-01-01 (static catalogue
knowledge): more coverage, but tags written after a rating leak into that rating's features.

    python -m augment.data.ml_latest_tags_text ../shared/data/ml-latest-small/tags.csv var/external/ml_latest_tags.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from augment.data.raw_columns import clean_text
from common.files import atomic_path


def tags_to_text(tags: pd.DataFrame, max_tags: int = 20, time: str = "last") -> pd.DataFrame:
    """item_id, text, event_timestamp (epoch seconds, or "" with time="none") from MovieLens tag rows."""
    tags = tags.assign(tag=[clean_text(t, 60) for t in tags["tag"]]).dropna(subset=["tag"])
    tags = tags.assign(key=tags["tag"].str.lower(), order=range(len(tags)))
    # One spelling per tag (its first), counted over every user who used it in any case.
    grouped = tags.groupby(["movieId", "key"], sort=False).agg(tag=("tag", "first"), n=("tag", "size"),
                                                               first=("order", "min")).reset_index()
    grouped = grouped.sort_values(["movieId", "n", "first"], ascending=[True, False, True])
    texts = grouped.groupby("movieId", sort=True)["tag"].agg(
        lambda s: "Tagged by users as: " + ", ".join(s.head(max_tags)) + ".")
    out = pd.DataFrame({"item_id": texts.index.astype("int64"), "text": texts.to_numpy()})
    if time == "last":
        last = tags.groupby("movieId")["timestamp"].max().reindex(texts.index)
        out["event_timestamp"] = last.astype("int64").to_numpy()
    else:
        out["event_timestamp"] = ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tags", type=Path, help="MovieLens tags.csv (userId,movieId,tag,timestamp)")
    parser.add_argument("out", type=Path, help="CSV to write: item_id,text,event_timestamp")
    parser.add_argument("--max-tags", type=int, default=20)
    parser.add_argument("--time", choices=["last", "none"], default="last")
    args = parser.parse_args(argv)
    tags = pd.read_csv(args.tags, dtype={"tag": str}, keep_default_na=False, encoding="utf-8")
    out = tags_to_text(tags, args.max_tags, args.time)
    with atomic_path(args.out) as tmp:  # an interrupted run leaves no half-written CSV for import-text
        out.to_csv(tmp, index=False)
    print(f"{len(out)} movies with tags from {len(tags)} tag rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
