"""A child stage's stderr reaches the task log at each record's own level (augment/stage_process.py), not all at
ERROR as Airflow's supervisor would file raw stderr."""
from __future__ import annotations

import io
import logging

import pytest

from augment.stage_process import relog_child_stderr

pytestmark = pytest.mark.timeout(30)


def test_records_keep_their_level_and_logger(caplog):
    stderr = io.BytesIO(
        b"2026-12-07 10:00:00,001 INFO augment.llm.generate: shard 0: 12 prompts\n"
        b"generate item shard 0:  10%|#  | 1/10\rgenerate item shard 0: 100%|###| 10/10\r\n"
        b"2026-12-07 10:00:01,002 WARNING augment.text.output_validation: 2 outputs truncated\n"
        b"Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"
        b"error: items.csv row 3 column item_id: not an integer")
    with caplog.at_level(logging.DEBUG):
        relog_child_stderr(stderr)
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert got[0] == ("augment.llm.generate", "INFO", "shard 0: 12 prompts")
    # the bar: its first draw (the bar was quiet) and its final state, at INFO, not ERROR
    bars = [g for g in got if "generate item shard 0" in g[2]]
    assert bars[-1][2].endswith("10/10") and {g[1] for g in bars} == {"INFO"}
    assert ("augment.text.output_validation", "WARNING", "2 outputs truncated") in got
    tail = got[-4:]
    assert [g[1] for g in tail] == ["ERROR"] * 4 and tail[-1][2].startswith("error: items.csv row 3")
