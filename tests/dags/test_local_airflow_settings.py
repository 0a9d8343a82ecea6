"""The throw-away Airflow deployment's SQLite settings: writers wait for a lock instead of failing after sqlite3's
default 5 s (ops/local_airflow.py SQLITE_CONNECT_ARGS)."""
from __future__ import annotations

import importlib

import pytest

from ops.local_airflow import LocalAirflow

pytestmark = pytest.mark.timeout(60)


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_sqlite_connections_wait_for_the_write_lock(tmp_path):
    settings = LocalAirflow(tmp_path).settings
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
        assert _resolve(settings[key])["timeout"] >= 60
