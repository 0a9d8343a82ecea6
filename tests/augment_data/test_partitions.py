"""A daily log in one file per interval (stream.partitions): the same table as the one-file log, versions by content,
and one-line errors naming the partition's file, line and column.

    pytest tests/augment_data/test_partitions.py -q
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from augment import stages
from augment.data.errors import DataError
from augment.data.ingest import load_dataset
from augment.data.sources import partition_fingerprint
from configs import StreamConfig, load_config

START = datetime(2026, 12, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HEAD = "user,movie,stars,ts"
TEMPLATE = "events/ds={start:%Y-%m-%d}.csv"


def _log(n_users: int = 12, per_user: int = 8, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(user, movie, stars, epoch seconds) over the 3 days before START and the 3 days after, time-ordered."""
    rng = np.random.default_rng(seed)
    t0 = int((START - 3 * DAY).timestamp())
    rows = [(u, int(item) + 1, int(rng.integers(1, 6)), t0 + int(rng.integers(0, 6 * 86400)))
            for u in range(1, n_users + 1) for item in rng.choice(20, size=per_user, replace=False)]
    return sorted(rows, key=lambda r: r[3])


def _lines(rows) -> list[str]:
    return [",".join(map(str, r)) for r in rows]


def _write(path: Path, lines: list[str], newline: str = "\n", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join([HEAD, *lines, ""]).encode())
    return path


def _day_of(t: int) -> int:
    return int((t - START.timestamp()) // 86400)


def _config(make_tiny_config, root: Path, rows, partitioned: bool = True, days: int = 3, **overrides):
    """A stream config over the tiny dataset's items/users and `rows` as the log: one file, or the rows before
    START in ratings.csv and one partition per day for `days` days."""
    partitions = str(root / "data" / TEMPLATE) if partitioned else None
    path = make_tiny_config(root, **{"data.id_types": {"user": "int", "item": "int"},
                                     "stream": {"start": START.isoformat(), "partitions": partitions}, **overrides})
    data = root / "data"
    _write(data / "ratings.csv", _lines(r for r in rows if not partitioned or _day_of(r[3]) < 0))
    if partitioned:
        for k in range(days):
            _write(data / TEMPLATE.format(start=START + k * DAY), _lines(r for r in rows if _day_of(r[3]) == k))
    return load_config(path)


def _interactions(cfg, end: datetime) -> tuple[dict[str, str], pd.DataFrame]:
    run = cfg.with_stream_end(end)
    versions = stages.ingest(run)
    return versions, stages.store_for(run).read_pandas("interactions", versions["interactions"])


def _error(cfg, end: datetime = START + 3 * DAY) -> str:
    with pytest.raises(DataError) as info:
        stages.ingest(cfg.with_stream_end(end))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.timeout(120)
def test_partitions_give_the_table_of_the_one_file_log(make_tiny_config, tmp_path):
    rows = _log()
    table = _config(make_tiny_config, tmp_path / "table", rows, partitioned=False)
    parts = _config(make_tiny_config, tmp_path / "parts", rows)
    for k in range(4):  # the bootstrap run, then one run per landed day
        _, want = _interactions(table, START + k * DAY)
        _, got = _interactions(parts, START + k * DAY)
        assert len(got) == sum(_day_of(r[3]) < k for r in rows) > 0
        pd.testing.assert_frame_equal(got, want)


@pytest.mark.timeout(120)
def test_versions_follow_the_partitions_read(make_tiny_config, tmp_path):
    rows = _log()
    cfg = _config(make_tiny_config, tmp_path, rows, days=2)
    first, _ = _interactions(cfg, START + 2 * DAY)
    again, _ = _interactions(cfg, START + 2 * DAY)
    assert again == first  # nothing changed: every table reused
    manifest = stages.store_for(cfg).manifest("interactions", first["interactions"])
    assert list(manifest["recipe"]["partitions"]) == [str(tmp_path / "data" / TEMPLATE.format(start=START + k * DAY))
                                                     for k in range(2)]

    _write(tmp_path / "data" / TEMPLATE.format(start=START + 2 * DAY), _lines(r for r in rows if _day_of(r[3]) == 2))
    landed, frame = _interactions(cfg, START + 3 * DAY)
    assert landed["interactions"] != first["interactions"] and len(frame) == len(rows)
    assert (landed["items"], landed["users"]) == (first["items"], first["users"])  # the catalogue keeps its versions

    # A partition rewritten in place (a late correction) is a new version at the same end, found by content.
    day0 = tmp_path / "data" / TEMPLATE.format(start=START)
    _write(day0, day0.read_text().splitlines()[1:-1])
    fixed, frame = _interactions(cfg, START + 3 * DAY)
    assert fixed["interactions"] != landed["interactions"] and len(frame) == len(rows) - 1
    assert fixed["items"] == first["items"]


@pytest.mark.timeout(120)
def test_a_row_outside_its_partitions_interval(make_tiny_config, tmp_path):
    cfg = _config(make_tiny_config, tmp_path, _log())
    day1 = tmp_path / "data" / TEMPLATE.format(start=START + DAY)
    lines = day1.read_text().splitlines()[1:]
    late = int((START + 2 * DAY).timestamp())  # the next interval's first second
    _write(day1, [lines[0], f"3,4,5,{late}", *lines[1:]])  # line 3
    msg = _error(cfg)
    assert msg.startswith(f"{day1}: line 3: column 'ts': ") and "outside this partition's interval" in msg, msg
    assert "2026-12-02T00:00:00+00:00..2026-12-03T00:00:00+00:00" in msg


@pytest.mark.timeout(120)
def test_a_bootstrap_row_at_stream_start(make_tiny_config, tmp_path):
    cfg = _config(make_tiny_config, tmp_path, _log())
    boot = tmp_path / "data" / "ratings.csv"
    lines = boot.read_text().splitlines()[1:]
    _write(boot, [*lines[:4], f"3,4,5,{int(START.timestamp())}", *lines[4:]])  # line 6
    msg = _error(cfg, START)  # the bootstrap run reads no partition, and still checks it
    assert msg.startswith(f"{boot}: line 6: column 'ts': ") and "not before stream.start" in msg, msg


@pytest.mark.timeout(120)
def test_a_partition_that_has_not_landed(make_tiny_config, tmp_path):
    cfg = _config(make_tiny_config, tmp_path, _log())
    day2 = tmp_path / "data" / TEMPLATE.format(start=START + 2 * DAY)
    day2.unlink()
    _interactions(cfg, START + 2 * DAY)  # a run that does not need it yet
    msg = _error(cfg)
    assert msg.startswith(f"{day2}: partition for interval 2026-12-03T00:00:00+00:00..2026-12-04T00:00:00+00:00 "
                          f"has not landed"), msg


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bad, column, problem", [
    ("5,7,abc,{t}", "stars", r"not a number: 'abc'"),
    ("5,99,4,{t}", "movie", r"item_id 99 not found in .*movies\.csv"),
    ("x5,7,4,{t}", "user", r"not a canonical integer id: 'x5'"),
])
def test_errors_in_a_partition_name_its_file(make_tiny_config, tmp_path, bad, column, problem):
    cfg = _config(make_tiny_config, tmp_path, _log())
    day1 = tmp_path / "data" / TEMPLATE.format(start=START + DAY)
    lines = day1.read_text().splitlines()[1:]
    _write(day1, [*lines[:2], bad.format(t=int((START + DAY).timestamp()) + 5), *lines[2:]])  # line 4
    msg = _error(cfg)
    assert re.match(rf"{re.escape(str(day1))}: line 4: column '{column}': {problem}", msg), msg


@pytest.mark.timeout(120)
def test_an_empty_partition_is_a_quiet_day(make_tiny_config, tmp_path):
    rows = _log()
    cfg = _config(make_tiny_config, tmp_path, rows)
    _write(tmp_path / "data" / TEMPLATE.format(start=START + DAY), [])
    _, frame = _interactions(cfg, START + 3 * DAY)
    assert len(frame) == sum(_day_of(r[3]) != 1 for r in rows)


@pytest.mark.timeout(120)
def test_bom_crlf_and_unicode_ids_in_a_partition(make_tiny_config, tmp_path):
    users = ["zoë", "用户-7", "ß"]
    cfg = _config(make_tiny_config, tmp_path, [], days=0, **{"data.id_types": {"user": "string", "item": "string"},
                                                             "data.generic.users": None})
    t = int(START.timestamp())
    _write(tmp_path / "data" / "ratings.csv", [f"{users[0]},1,4,{t - 60}"])
    day0 = _write(tmp_path / "data" / TEMPLATE.format(start=START),
                  [f"{users[1]},2,5,{t + 1}", f'"{users[2]}",3,2,{t + 2}', f"{users[0]},4,1,{t + 3}"],
                  newline="\r\n", bom=True)
    versions, frame = _interactions(cfg, START + DAY)
    ids = stages.store_for(cfg).read_pandas("user_id_map", versions["user_id_map"])
    assert sorted(ids["source_id"]) == sorted(users)
    assert len(frame) == 4 and frame["timestamp"].max() == pd.Timestamp(t + 3, unit="s", tz="UTC")

    # Line numbers count CRLF lines after the BOM.
    _write(day0, [f"{users[1]},2,5,{t + 1}", f"{users[2]},3,2,{t + 86400}"], newline="\r\n", bom=True)
    msg = _error(cfg, START + DAY)
    assert msg.startswith(f"{day0}: line 3: column 'ts': "), msg


@pytest.mark.timeout(60)
def test_relative_templates_resolve_against_base_dir(make_dataset, tmp_path):
    cfg = make_dataset(ratings=f"{HEAD}\n1,10,4,{int(START.timestamp()) - 5}\n")
    _write(tmp_path / TEMPLATE.format(start=START), [f"2,20,5,{int(START.timestamp()) + 5}"])
    stream = StreamConfig(start=START, end=START + DAY, partitions=TEMPLATE)
    assert list(partition_fingerprint(cfg, stream, base_dir=tmp_path)) == ["events/ds=2026-12-01.csv"]
    assert len(load_dataset(cfg, tmp_path, base_dir=tmp_path, stream=stream).interactions) == 2
    with pytest.raises(DataError, match="stream.partitions needs data.source: generic"):
        load_dataset(cfg.model_copy(update={"source": "movielens100k"}), tmp_path, stream=stream)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("template, problem", [
    ("events/{}.csv", "is not a path template of {start}"),
    ("events/{day}.csv", "is not a path template of {start}"),
    ("events/{start:%Y-%m}.csv", "names one file"),  # monthly names for daily runs
])
def test_bad_templates_are_config_errors(template, problem):
    with pytest.raises(ValidationError, match=re.escape(problem)):
        StreamConfig(start=START, partitions=template)
