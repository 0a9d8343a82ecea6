"""ml-latest-small restricted to the movies that carry a human plot overview (TMDB), as files the generic loader
and `import-text` read: the data for "items that carry their own text" (grounded generation, issue 26).

Writes three CSVs into OUT (never into the repository: the data keeps its research terms):

- ratings.csv   ml-latest-small ratings of the movies with an overview (every other rating is dropped: a movie
                without text is not what this data set measures)
- movies.csv    those movies, with an `overview` column (data.item_text_columns: [overview])
- overviews_text.csv   item_id,text: the overviews themselves, for `python -m augment import-text --kind item`
                (the "human text" arm: the same vectors, tables and variants as LLM text)

    python -m augment.data.tmdb_overviews ../shared/data/ml-latest-small ../shared/data/tmdb-overviews/overviews.csv \
        var/external/tmdb
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from common.files import atomic_path

log = logging.getLogger(__name__)


def overview_subset(ratings: pd.DataFrame, movies: pd.DataFrame,
                    overviews: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(ratings, movies with `overview`, item_id/text) restricted to movies with a non-blank overview."""
    ov = overviews.assign(overview=overviews["overview"].fillna("").astype(str).str.strip())
    ov = ov[ov["overview"] != ""].drop_duplicates("movieId", keep="first")
    movies = movies.merge(ov[["movieId", "overview"]], on="movieId", how="inner")
    ratings = ratings[ratings["movieId"].isin(movies["movieId"])]
    movies = movies[movies["movieId"].isin(ratings["movieId"])].sort_values("movieId")
    text = pd.DataFrame({"item_id": movies["movieId"].to_numpy(), "text": movies["overview"].to_numpy()})
    return ratings.reset_index(drop=True), movies.reset_index(drop=True), text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ml_dir", type=Path, help="ml-latest-small folder (ratings.csv, movies.csv)")
    parser.add_argument("overviews", type=Path, help="overviews.csv (movieId,tmdbId,title,overview)")
    parser.add_argument("out", type=Path, help="folder to write ratings.csv, movies.csv, overviews_text.csv into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    read = dict(encoding="utf-8", keep_default_na=False, na_values=[])
    ratings = pd.read_csv(args.ml_dir / "ratings.csv", **read)
    movies = pd.read_csv(args.ml_dir / "movies.csv", dtype={"title": str, "genres": str}, **read)
    overviews = pd.read_csv(args.overviews, dtype={"overview": str}, **read)
    for name, frame, cols in (("ratings.csv", ratings, ["userId", "movieId"]), ("movies.csv", movies, ["movieId"]),
                              (args.overviews.name, overviews, ["movieId", "overview"])):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            print(f"error: {name}: missing column(s) {missing}", file=sys.stderr)
            return 2
    r, m, t = overview_subset(ratings, movies, overviews)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("ratings.csv", r), ("movies.csv", m), ("overviews_text.csv", t)):
        with atomic_path(args.out / name) as tmp:
            frame.to_csv(tmp, index=False)
    print(f"{len(m)} movies with an overview, {len(r)} of {len(ratings)} ratings, "
          f"{r['userId'].nunique()} users -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
