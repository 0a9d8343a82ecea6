"""Generic CSV/Parquet ingest: the good path, ml-latest-small, and one test per kind of bad input."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from augment.data.canonical_checks import validate
from augment.data.errors import DataError
from augment.data.ingest import load_dataset, load_generic
from augment.data.sources import source_names
from configs import ColumnMap, DataConfig, GenericSource, load_config

REPO = Path(__file__).resolve().parents[2]
RATINGS_HEAD = "user,movie,stars,ts\n"


def test_good_csv_types_and_values(make_dataset):
    c = load_generic(make_dataset())
    validate(c, source_names(make_dataset()))
    assert dict(c.interactions.dtypes.astype(str)) == {
        "user_id": "int64", "item_id": "int64", "rating": "float32", "label": "int8",
        "timestamp": "datetime64[us, UTC]"}
    assert c.interactions["label"].tolist() == [1, 0, 1, 0, 0]  # sorted by user, time: 4,3 | 5,1 | 2.5
    assert c.interactions["timestamp"].iloc[0] == pd.Timestamp(100, unit="s", tz="UTC")
    items = c.items.set_index("item_id")
    assert items.loc[20, "title"] == "Beta, The" and items.loc[20, "year"] == 2001  # year moved out of the title
    assert items.loc[10, "genres"] == ["Drama", "Comedy"]
    assert items.loc[30, "genres"] == [] and pd.isna(items.loc[30, "year"])
    users = c.users.set_index("user_id")
    assert users.loc[1, "gender"] == "F" and users.loc[1, "age"] == 29 and users.loc[1, "occupation"] == "writer"
    assert users.loc[3, "gender"] is None and pd.isna(users.loc[3, "age"])


def test_without_users_table(make_dataset):
    c = load_generic(make_dataset(users=None))
    assert len(c.users) == 0 and list(c.users.columns) == ["user_id", "gender", "age", "occupation", "zip_code"]
    validate(c, {})


def test_parquet_and_iso_timestamps(tmp_path):
    pd.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "rating": [4.5, 2.0],
                  "timestamp": ["2020-01-01T00:00:00Z", "2020-01-02T12:00:00+02:00"]}).to_parquet(tmp_path / "i.pq")
    pd.DataFrame({"item_id": [5, 6], "title": ["A", "B"], "genres": [["x", "y"], []],
                  "year": [2000, None]}).to_parquet(tmp_path / "m.parquet")
    cfg = DataConfig(source="generic", generic=GenericSource(
        interactions=ColumnMap(path="i.pq", format="parquet"), items=ColumnMap(path="m.parquet")))
    c = load_generic(cfg, base_dir=tmp_path)
    assert c.interactions["timestamp"].tolist() == [pd.Timestamp("2020-01-01", tz="UTC"),
                                                    pd.Timestamp("2020-01-02 10:00", tz="UTC")]
    assert c.items["genres"].tolist() == [["x", "y"], []] and c.items["year"].tolist() == [2000, pd.NA]


def test_millisecond_timestamps(make_dataset):
    cfg = make_dataset()
    cfg = cfg.model_copy(update={"generic": cfg.generic.model_copy(update={"timestamp_unit": "ms"})})
    assert load_generic(cfg).interactions["timestamp"].iloc[0] == pd.Timestamp(100, unit="ms", tz="UTC")


def test_ml_latest_small(ml_latest_small):
    cfg = DataConfig(source="generic", generic=GenericSource(
        interactions=ColumnMap(path="ratings.csv", columns={"user_id": "userId", "item_id": "movieId"}),
        items=ColumnMap(path="movies.csv", columns={"item_id": "movieId"})))
    c = load_generic(cfg, base_dir=ml_latest_small)
    validate(c, source_names(cfg))
    assert (len(c.interactions), len(c.items), len(c.users)) == (100836, 9742, 0)
    assert c.interactions["user_id"].nunique() == 610
    toy = c.items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert toy["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert c.items["year"].notna().mean() > 0.99
    assert 0.4 < c.interactions["label"].mean() < 0.6  # ratings >= 4 in ml-latest-small: ~48%


def test_ml_latest_small_yaml(ml_latest_small, monkeypatch):
    """The shipped config, relative paths resolved from the repo root as the CLI runs."""
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / "ml-latest-small.yaml").data
    c = load_dataset(cfg, REPO / "var" / "cache")
    assert cfg.sample_users is None and len(c.items) == 9742


def test_sample_users_is_seeded_and_trims_items(make_dataset, ml_latest_small):
    base = DataConfig(source="generic", sample_users=50, sample_seed=3, generic=GenericSource(
        interactions=ColumnMap(path=str(ml_latest_small / "ratings.csv"),
                               columns={"user_id": "userId", "item_id": "movieId"}),
        items=ColumnMap(path=str(ml_latest_small / "movies.csv"), columns={"item_id": "movieId"})))
    a, b = load_dataset(base, Path("unused")), load_dataset(base, Path("unused"))
    other = load_dataset(base.model_copy(update={"sample_seed": 4}), Path("unused"))
    assert a.interactions["user_id"].nunique() == 50
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert set(a.interactions["user_id"]) != set(other.interactions["user_id"])
    assert set(a.items["item_id"]) == set(a.interactions["item_id"])
    validate(a, {})


# ---- bad input: each raises DataError with one line naming file, row/key and column --------------------------


def _error(cfg: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        load_generic(cfg)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


def test_missing_file(make_dataset, tmp_path):
    cfg = make_dataset()
    (tmp_path / "movies.csv").unlink()
    assert re.search(r"movies\.csv: file not found", _error(cfg))


def test_missing_column(make_dataset):
    msg = _error(make_dataset(ratings="user,movie,ts\n1,10,100\n"))
    assert "ratings.csv" in msg and "column 'stars'" in msg and "missing column" in msg


def test_non_numeric_rating_names_line_17(make_dataset):
    rows = [f"1,10,4,{t}" for t in range(1, 16)] + ["1,20,abc,99"]  # header is line 1, the bad row line 17
    msg = _error(make_dataset(ratings=RATINGS_HEAD + "\n".join(rows) + "\n"))
    assert re.search(r"ratings\.csv: line 17: column 'stars': not a number: 'abc'", msg), msg


def test_non_integer_id(make_dataset):
    msg = _error(make_dataset(ratings=RATINGS_HEAD + "1,10,4,1\nx7,10,4,2\n"))
    assert "line 3" in msg and "column 'user'" in msg and "'x7'" in msg


def test_bad_timestamp(make_dataset):
    msg = _error(make_dataset(ratings=RATINGS_HEAD + "1,10,4,1\n1,20,4,yesterday\n"))
    assert "line 3" in msg and "column 'ts'" in msg


def test_duplicate_item_id_names_both_lines(make_dataset):
    movies = "id,name,genre\n" + "".join(f"{i},M{i},Drama\n" for i in (10, 20, 30, 1, 2, 3, 4)) + "20,Again,Drama\n"
    msg = _error(make_dataset(movies=movies))
    assert re.search(r"movies\.csv: column 'id': duplicate item_id 20 at line 3 and line 9", msg), msg


def test_duplicate_user(make_dataset):
    msg = _error(make_dataset(users="uid,sex,age_years,job\n1,F,29,writer\n2,M,17,student\n3,,,\n2,M,1,x\n"))
    assert "users.csv" in msg and "duplicate user_id 2 at line 3 and line 5" in msg


def test_duplicate_interaction(make_dataset):
    msg = _error(make_dataset(ratings=RATINGS_HEAD + "1,10,4,100\n2,10,4,100\n1,10,5,100\n"))
    assert "ratings.csv" in msg and "duplicate interaction" in msg and "(1, 10, " in msg
    assert "line 2 and line 4" in msg


def test_unknown_item(make_dataset):
    msg = _error(make_dataset(ratings=RATINGS_HEAD + "1,10,4,100\n1,99,4,101\n"))
    assert re.search(r"ratings\.csv: line 3: column 'movie': item_id 99 not found in .*movies\.csv", msg), msg


def test_unknown_user(make_dataset):
    msg = _error(make_dataset(ratings=RATINGS_HEAD + "1,10,4,100\n7,10,4,101\n"))
    assert re.search(r"line 3: column 'user': user_id 7 not found in .*users\.csv", msg), msg


def test_invalid_utf8_names_line_and_column(make_dataset):
    movies = b"id,name,genre\n10,Alpha,Drama\n20,Caf\xe9,Drama\n30,Gamma,Drama\n"
    msg = _error(make_dataset(movies=movies))
    assert re.search(r"movies\.csv: line 3: column 'name': invalid UTF-8 byte\(s\) 0xe9", msg), msg


def test_null_in_required_column(make_dataset):
    msg = _error(make_dataset(movies="id,name,genre\n10,Alpha,Drama\n20,,Drama\n30,G,Drama\n"))
    assert "movies.csv: line 3: column 'name': empty value in a required column" in msg


def test_control_characters_only_title(make_dataset):
    msg = _error(make_dataset(movies="id,name,genre\n10,Alpha,Drama\n20,Beta,Drama\n30,\x01\x02,Drama\n"))
    assert "movies.csv: line 4: column 'name': no printable text" in msg


def test_titles_are_cleaned(make_dataset):
    c = load_generic(make_dataset(movies='id,name,genre\n10,"  Al\tpha\x07 ",Drama\n20,B,Drama\n30,C,Drama\n'))
    assert c.items["title"].iloc[0] == "Al pha"


def test_line_numbers_survive_multiline_quoted_fields(make_dataset):
    movies = 'id,name,genre\n10,"Alpha\nsecond line",Drama\n20,B,Drama\n20,C,Drama\n30,D,Drama\n'
    msg = _error(make_dataset(movies=movies))
    assert "duplicate item_id 20 at line 4 and line 5" in msg, msg


def test_unknown_canonical_name_in_column_map(make_dataset):
    cfg = make_dataset()
    bad = cfg.generic.items.model_copy(update={"columns": {"item_id": "id", "titel": "name"}})
    msg = _error(cfg.model_copy(update={"generic": cfg.generic.model_copy(update={"items": bad})}))
    assert "titel" in msg and "movies.csv" in msg


def test_validate_rejects_wrong_dtype_and_nulls(make_dataset):
    c = load_generic(make_dataset())
    c.interactions["rating"] = c.interactions["rating"].astype("float64")
    with pytest.raises(DataError, match=r"ratings\.csv: column 'rating': dtype float64, expected float32"):
        validate(c, {"interactions": "ratings.csv"})
    c = load_generic(make_dataset())
    c.items.loc[1, "genres"] = None
    with pytest.raises(DataError, match=r"items: row 2: column 'genres': null in a required column"):
        validate(c, {})
    c = load_generic(make_dataset())
    c.items.loc[0, "title"] = "bad\ttitle"
    with pytest.raises(DataError, match=r"row 1: column 'title'"):
        validate(c, {})
