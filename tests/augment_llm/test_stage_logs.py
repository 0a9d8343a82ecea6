"""Stderr text reaches the task log at each record's own level (common/stderr_logging.py): a child stage's
stderr pipe and the task's own stderr, not all at ERROR as Airflow's supervisor would file raw stderr."""
from __future__ import annotations

import io
import logging

import pytest

from common.stderr_logging import relog_stream, stderr_relogged

pytestmark = pytest.mark.timeout(30)


def test_records_keep_their_level_and_logger(caplog):
    stderr = io.BytesIO(
        b"2026-12-07 10:00:00,001 INFO augment.llm.generate: shard 0: 12 prompts\n"
        b"generate item shard 0:  10%|#  | 1/10\rgenerate item shard 0: 100%|###| 10/10\r\n"
        b"2026-12-07 10:00:01,002 WARNING augment.text.output_validation: 2 outputs truncated\n"
        b"Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"
        b"error: items.csv row 3 column item_id: not an integer")
    with caplog.at_level(logging.DEBUG):
        relog_stream(stderr)
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert got[0] == ("augment.llm.generate", "INFO", "shard 0: 12 prompts")
    # the bar: its first draw (the bar was quiet) and its final state, at INFO, not ERROR
    bars = [g for g in got if "generate item shard 0" in g[2]]
    assert bars[-1][2].endswith("10/10") and {g[1] for g in bars} == {"INFO"}
    assert ("augment.text.output_validation", "WARNING", "2 outputs truncated") in got
    tail = got[-4:]
    assert [g[1] for g in tail] == ["ERROR"] * 4 and tail[-1][2].startswith("error: items.csv row 3")


def test_a_tasks_own_stderr_is_logged_and_a_progress_bar_is_info(caplog):
    import sys

    from tqdm import tqdm

    with caplog.at_level(logging.DEBUG), stderr_relogged("models.retrain"):
        for _ in tqdm(range(3), desc="train variants"):
            pass
        print("a warning printed to stderr", file=sys.stderr)
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert got and all(g[0] == "models.retrain" and g[1] == "INFO" for g in got), got
    assert "3/3" in got[-2][2] and got[-1][2] == "a warning printed to stderr"


def test_utf8_cut_between_chunks_is_kept_whole(caplog):
    class Chunks(io.BytesIO):
        def read1(self, n=-1):
            return super().read1(3)  # cuts "é" (2 bytes) across reads

    with caplog.at_level(logging.INFO):
        relog_stream(Chunks("2026-12-07 10:00:00,001 INFO augment: café\n".encode()))
    assert [r.getMessage() for r in caplog.records] == ["café"]
