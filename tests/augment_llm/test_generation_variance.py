"""The generation-variance report without an LLM: pairwise-cosine math and the JSON file, with a fake encoder."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from augment.generation_variance import sample_prompts, variance_stats, write_report

pytestmark = pytest.mark.timeout(60)

KEYS = ["kind", "sample", "seeds", "temperature", "identical_fraction", "mean_pairwise_cosine",
        "min_pairwise_cosine", "between_item_cosine", "seconds"]


def fake_encoder(table: dict[str, list[float]]):
    """A fake encoder: looks each text's vector up in `table` (unnormalised, to check the math normalises)."""
    return lambda texts: np.array([table[t] for t in texts], dtype=np.float32)


def test_variance_stats_by_hand():
    vec = {"a": [1, 0, 0], "a2": [3, 4, 0], "b": [0, 2, 0], "c": [0, 0, 5]}
    # item 0 moves between seeds (a, a, a2); items 1 and 2 never do.
    texts = [["a", "b", "c"], ["a", "b", "c"], ["a2", "b", "c"]]
    got = variance_stats(texts, fake_encoder(vec))
    # item 0: pairs (a,a)=1, (a,a2)=0.6, (a,a2)=0.6 -> mean 2.2/3; items 1, 2: 1.0
    assert got["identical_fraction"] == pytest.approx(2 / 3)
    assert got["min_pairwise_cosine"] == pytest.approx(2.2 / 3)
    assert got["mean_pairwise_cosine"] == pytest.approx((2.2 / 3 + 2) / 3)
    # seed 0's vectors a, b, c are orthogonal: different items share nothing.
    assert got["between_item_cosine"] == pytest.approx(0.0)


def test_identical_texts_give_cosine_one_and_between_items_is_off_diagonal_mean():
    vec = {"x": [1, 0], "y": [1, 1]}
    got = variance_stats([["x", "y"], ["x", "y"]], fake_encoder(vec))
    assert got["identical_fraction"] == 1.0
    assert got["mean_pairwise_cosine"] == pytest.approx(1.0) and got["min_pairwise_cosine"] == pytest.approx(1.0)
    assert got["between_item_cosine"] == pytest.approx(1 / np.sqrt(2))


def test_variance_stats_rejects_one_seed():
    with pytest.raises(ValueError, match="2 seeds"):
        variance_stats([["x", "y"]], fake_encoder({"x": [1.0], "y": [1.0]}))


def test_report_has_exactly_the_documented_keys(tmp_path):
    stats = {"identical_fraction": 0.5, "mean_pairwise_cosine": 0.9, "min_pairwise_cosine": 0.7,
             "between_item_cosine": 0.3}
    path = tmp_path / "stats" / "generation_variance.json"
    out = write_report(path, sample=4, seeds=[0, 1, 2], temperature=0.7, stats=stats, seconds=12.34)
    on_disk = json.loads(path.read_text())
    assert list(on_disk) == KEYS and on_disk == out
    assert on_disk["kind"] == "item" and on_disk["seeds"] == [0, 1, 2] and on_disk["seconds"] == 12.3
    assert not list(path.parent.glob(".tmp-*"))  # written through the atomic helper: no temp file left


def test_sample_is_independent_of_row_order():
    frame = pd.DataFrame({"item_id": range(10), "prompt_hash": [f"{(7 * i) % 10:02d}" for i in range(10)]})
    first = sample_prompts(frame, 4)
    again = sample_prompts(frame.sample(frac=1.0, random_state=3), 4)
    assert first["item_id"].tolist() == again["item_id"].tolist() and len(first) == 4
