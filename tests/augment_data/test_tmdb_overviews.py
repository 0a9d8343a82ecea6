"""augment/data/tmdb_overviews.py: ml-latest-small restricted to the movies with a human overview."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from augment.data.tmdb_overviews import main, overview_subset

pytestmark = pytest.mark.timeout(120)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_subset_keeps_movies_with_text_and_their_ratings():
    ratings = pd.DataFrame({"userId": [1, 1, 2, 3], "movieId": [10, 20, 10, 30], "rating": [4, 3, 5, 2],
                            "timestamp": [1, 2, 3, 4]})
    movies = pd.DataFrame({"movieId": [10, 20, 30, 40], "title": ["A", "B", "C", "D"], "genres": ["x"] * 4})
    overviews = pd.DataFrame({"movieId": [10, 20, 40, 10], "overview": ["  Spies. ", "  ", "Never rated.", "dup"]})
    r, m, t = overview_subset(ratings, movies, overviews)
    assert m["movieId"].tolist() == [10]            # 20: blank overview; 30: none; 40: never rated
    assert m["overview"].tolist() == ["Spies."]      # stripped; the first of a repeated movieId
    assert r["movieId"].tolist() == [10, 10] and r["userId"].tolist() == [1, 2]
    assert t.to_dict("records") == [{"item_id": 10, "text": "Spies."}]


def test_missing_column_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "ml").mkdir()
    pd.DataFrame({"userId": [1], "movieId": [1]}).to_csv(tmp_path / "ml" / "ratings.csv", index=False)
    pd.DataFrame({"movieId": [1], "title": ["A"], "genres": ["x"]}).to_csv(tmp_path / "ml" / "movies.csv", index=False)
    pd.DataFrame({"movieId": [1], "text": ["t"]}).to_csv(tmp_path / "ov.csv", index=False)
    assert main([str(tmp_path / "ml"), str(tmp_path / "ov.csv"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: ov.csv: missing column(s) ['overview']"
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (SHARED / "tmdb-overviews" / "overviews.csv").exists(),
                    reason="../shared/data (ml-latest-small, tmdb-overviews) is absent")
def test_on_the_shared_data(tmp_path):
    assert main([str(SHARED / "ml-latest-small"), str(SHARED / "tmdb-overviews" / "overviews.csv"),
                 str(tmp_path)]) == 0
    movies = pd.read_csv(tmp_path / "movies.csv")
    ratings = pd.read_csv(tmp_path / "ratings.csv")
    assert len(movies) == 3536 and movies["overview"].str.len().min() > 0
    assert set(ratings["movieId"]) == set(movies["movieId"]) and len(ratings) == 70194
    assert ratings["userId"].nunique() == 610
