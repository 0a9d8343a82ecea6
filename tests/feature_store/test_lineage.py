"""lineage(): the versions a table version was made from, followed through the recipes' pins; other versions of
the same tables are not in it. run_stats keeps a report to its own run's stage records."""
from dataclasses import replace

import pytest

from feature_store.maintenance import lineage

pytestmark = pytest.mark.timeout(60)


def test_lineage_follows_recipe_pins_and_nothing_else(store, item_spec, make_items):
    a = store.publish(item_spec, make_items(gen=1), recipe={"n": 1}).version
    other = store.publish(item_spec, make_items(gen=2), recipe={"n": 2}).version  # same table, another run
    derived = replace(item_spec, name="item_emb2")
    b = store.publish(derived, make_items(gen=3), recipe={"inputs": {"prompts": a}, "k": [1, "x"]}).version
    assert lineage(store, {"item_emb2": b}) == {b: "item_emb2", a: "item_emb"}
    assert lineage(store, {"item_emb": other}) == {other: "item_emb"}
    assert lineage(store, {"item_emb": "no-such-version"}) == {}


def test_a_report_reads_only_its_own_runs_stage_records():
    from models.retrain import run_stats

    stats = {"ingest": {"rows": {"interactions": 5}, "versions": {"interactions": "mine"}},
             "split": {"rows": {"interaction_splits": 9}, "versions": {"interaction_splits": "theirs"}},
             "generate-item-000": {"seconds": 3.0, "inputs": {"item_prompts": "p1"}},
             "encode-user": {"seconds": 1.0},  # written before records named their versions: not claimed
             "retrain": {"seconds": 2.0}}
    kept = run_stats(stats, {"mine": "interactions", "p1": "item_prompts"})
    assert sorted(kept) == ["generate-item-000", "ingest", "retrain"]
