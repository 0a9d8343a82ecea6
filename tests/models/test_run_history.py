"""models/run_history.py: the daily history table and plot, from rows as retrain_ctr records them."""
from __future__ import annotations

import pytest

from models.run_history import read_history, record_run

pytestmark = pytest.mark.timeout(60)


def _row(end: str, kind: str, delta=None, low=None, high=None, promoted=False) -> dict:
    return {"end": end, "kind": kind, "new_interactions": 100, "profiles_written": 3, "items_written": 0,
            "llm_calls": 3, "output_tokens": 120, "augment_seconds": 60.0, "retrain_seconds": 40.0,
            "models_trained": 15, "champion_auc": None if delta is None else 0.70, "challenger_auc": 0.71,
            "champion_gauc": None, "challenger_gauc": None, "delta_auc": delta, "delta_low": low,
            "delta_high": high, "cold_rows": 0, "challenger_cold_auc": None, "promoted": promoted}


def test_history_plot_draws_the_gate_interval(tmp_path):
    """Rows with and without a gate difference (the bootstrap has no champion) render; the PNG and the table
    carry every interval, in time order."""
    record_run(tmp_path, _row("1998-04-16T00:00:00+00:00", "bootstrap", promoted=True))
    record_run(tmp_path, _row("1998-04-18T00:00:00+00:00", "interval", -0.03, -0.07, 0.003))
    record_run(tmp_path, _row("1998-04-17T00:00:00+00:00", "interval", 0.014, 0.005, 0.023, promoted=True))
    h = read_history(tmp_path)
    assert [f"{e:%m-%d}" for e in h["end"]] == ["04-16", "04-17", "04-18"]
    png = tmp_path / "history.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = (tmp_path / "history.md").read_text()
    assert "+0.0140 [0.0050, 0.0230] | 0: - | yes" in table
    assert "-0.0300 [-0.0700, 0.0030] (within noise) | 0: - | no" in table
