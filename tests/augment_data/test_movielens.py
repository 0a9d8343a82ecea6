"""MovieLens-100K from the recbole wheel: fetch/reuse/hash check, the raw reader, and the canonical tables."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from augment.data.canonical_checks import validate
from augment.data.errors import DataError
from augment.data.ingest import load_dataset
from augment.data.movielens import fetch_recbole_wheel, read_ml100k
from augment.data.sources import source_names
from common.files import file_sha256
from configs import DataConfig

CFG = DataConfig()
WHEEL = "recbole-1.2.1-py3-none-any.whl"


def test_cached_wheel_is_reused_without_pip(ml100k_cache, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the cached wheel matches")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert fetch_recbole_wheel(ml100k_cache, CFG.recbole_version, CFG.recbole_sha256) == ml100k_cache / WHEEL


def _fake_pip(payload: bytes):
    """A stand-in for `pip download` that drops ``payload`` as the wheel (exercises the hash check offline)."""
    def run(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / WHEEL).write_bytes(payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_hash_mismatch_raises_and_deletes(tmp_path, monkeypatch):
    (tmp_path / WHEEL).write_bytes(b"stale cached file")
    monkeypatch.setattr(subprocess, "run", _fake_pip(b"tampered wheel"))
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch_recbole_wheel(tmp_path, CFG.recbole_version, CFG.recbole_sha256)
    assert list(tmp_path.iterdir()) == []  # neither the stale cache nor the bad download nor the temp dir remain


def test_wrong_cached_file_is_replaced(tmp_path, monkeypatch, ml100k_cache):
    (tmp_path / WHEEL).write_bytes(b"stale cached file")
    monkeypatch.setattr(subprocess, "run", _fake_pip((ml100k_cache / WHEEL).read_bytes()))
    got = fetch_recbole_wheel(tmp_path, CFG.recbole_version, CFG.recbole_sha256)
    assert file_sha256(got) == CFG.recbole_sha256 and [p.name for p in tmp_path.iterdir()] == [WHEEL]


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution"))
    with pytest.raises(RuntimeError, match="No matching distribution"):
        fetch_recbole_wheel(tmp_path, "0.0.0", CFG.recbole_sha256)


@pytest.mark.network
@pytest.mark.timeout(600)
def test_real_fetch_from_pypi(tmp_path):
    """Really runs `pip download recbole==1.2.1` (PyPI) into a fresh dir and checks the pinned hash."""
    got = fetch_recbole_wheel(tmp_path, CFG.recbole_version, CFG.recbole_sha256)
    assert got.name == WHEEL and file_sha256(got) == CFG.recbole_sha256
    assert [p.name for p in tmp_path.iterdir()] == [WHEEL]


def test_raw_reader(ml100k_cache):
    raw = read_ml100k(ml100k_cache / WHEEL)
    assert {k: v.shape for k, v in raw.items()} == {"inter": (100000, 5), "item": (1682, 5), "user": (943, 6)}
    assert list(raw["item"].columns) == ["item_id", "movie_title", "release_year", "class", "_line"]
    first = raw["item"].iloc[0]
    assert (first["movie_title"], first["class"], first["_line"]) == ("Toy Story", "Animation Children's Comedy", 2)


def test_canonical_tables(ml100k):
    validate(ml100k, source_names(CFG))
    inter, items, users = ml100k.interactions, ml100k.items, ml100k.users
    assert (len(inter), len(items), len(users)) == (100000, 1682, 943)
    assert str(inter["timestamp"].dtype) == "datetime64[us, UTC]"
    assert inter["label"].sum() == 34174 + 21201  # ratings 4 and 5
    assert inter["timestamp"].min() == pd.Timestamp("1997-09-20 03:05:10", tz="UTC")
    by_id = items.set_index("item_id")
    assert by_id.loc[1, "genres"] == ["Animation", "Children's", "Comedy"] and by_id.loc[1, "year"] == 1995
    # Known dirt: year "V" with the year in the title; an "unknown"-genre placeholder item.
    assert by_id.loc[1412, "year"] == 1995 and not by_id.loc[1412, "title"].endswith("(1995)")
    assert by_id.loc[267, "genres"] == [] and pd.isna(by_id.loc[267, "year"])
    assert by_id.loc[543, "title"] == "Misérables, Les"
    u = users.set_index("user_id").loc[2]
    assert (u["gender"], u["age"], u["occupation"], u["zip_code"]) == ("F", 53, "other", "94043")
    assert inter[["user_id", "timestamp", "item_id"]].equals(
        inter[["user_id", "timestamp", "item_id"]].sort_values(["user_id", "timestamp", "item_id"]))


def test_sampled_users(ml100k_cache):
    c = load_dataset(DataConfig(sample_users=25, sample_seed=1), ml100k_cache)
    assert c.interactions["user_id"].nunique() == 25 == len(c.users)
    assert set(c.items["item_id"]) == set(c.interactions["item_id"])
    validate(c, {})
