"""CLI: ls, inspect, validate, diff, gc with model-manifest pins; exit 2 with one line on bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from feature_store.cli import main

REPO = Path(__file__).resolve().parents[2]


def _publish_versions(store, item_spec, make_items, n: int) -> list[str]:
    return [store.publish(item_spec, make_items(n_items=10 + i, gen=float(i)), recipe={"n": i}).version
            for i in range(n)]


def test_ls_inspect_validate_diff(store, item_spec, make_items, capsys):
    v = _publish_versions(store, item_spec, make_items, 2)
    root = str(store.root)
    assert main(["--root", root, "ls"]) == 0
    assert "item_emb" in capsys.readouterr().out
    assert main(["--root", root, "inspect", f"item_emb@{v[0][:5]}"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["version"] == v[0] and m["recipe"] == {"n": 0}
    assert main(["--root", root, "validate"]) == 0
    assert capsys.readouterr().out.count("OK ") == 2
    assert main(["--root", root, "diff", "item_emb", v[0], v[1]]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["rows"] == [30, 33] and d["recipe"] == {"n": [0, 1]} and d["keys"] == {"only_v1": 0, "only_v2": 1,
                                                                                    "both": 10}
    path = store.root / "item_emb" / f"version={v[1]}" / "part-0.parquet"
    pq.write_table(pq.read_table(path).slice(0, 3), path)
    assert main(["--root", root, "validate", "item_emb"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL item_emb@{v[1]}" in out and f"OK   item_emb@{v[0]}" in out


def test_bad_input_exits_2_with_one_line(store, item_spec, make_items, tmp_path):
    _publish_versions(store, item_spec, make_items, 1)
    cases = [["--root", str(store.root), "inspect", "nope"],
             ["--root", str(store.root), "inspect", "item_emb@ffffff"],
             ["--root", str(tmp_path / "missing"), "ls"],
             ["--root", str(store.root), "frobnicate"],
             ["--root", str(store.root), "gc", "--keep", "0"],
             ["--root", str(store.root), "gc", "--keep", "1", "--pins", str(tmp_path / "nowhere")]]
    for argv in cases:
        r = subprocess.run([sys.executable, "-m", "feature_store", *argv], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error:"), (argv, r.stderr)


def test_gc_keeps_newest_latest_and_pinned(store, item_spec, make_items, tmp_path, capsys):
    v = _publish_versions(store, item_spec, make_items, 5)  # v[4] newest
    store.publish(item_spec, make_items(n_items=10, gen=0.0), recipe={"n": 0})  # v[0] latest again (reused)
    models = tmp_path / "models"
    (models / "ctr_a").mkdir(parents=True)
    (models / "ctr_a" / "manifest.json").write_text(json.dumps({"feature_tables": {"item_emb": v[1]}}))
    (models / "other.json").write_text("not json")  # not named manifest.json: ignored
    (store.root / "item_emb" / "_data" / ".tmp-deadbeef").mkdir()  # leftover of a killed publish
    root = str(store.root)
    assert main(["--root", root, "gc", "--keep", "2", "--pins", str(models), "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out
    assert len(store.versions("item_emb")) == 5
    assert main(["--root", root, "gc", "--keep", "2", "--pins", str(models), "--grace-seconds", "0"]) == 0
    kept = {r["version"] for r in store.versions("item_emb")}
    # newest two by publish time are v[3] and v[4]; v[0] is latest; v[1] is pinned; only v[2] goes.
    assert kept == {v[0], v[1], v[3], v[4]}
    assert not (store.root / "item_emb" / "_data" / ".tmp-deadbeef").exists()
    assert len(list((store.root / "item_emb" / "_data").iterdir())) == 4
    assert main(["--root", root, "validate"]) == 0
    (models / "ctr_b").mkdir()
    (models / "ctr_b" / "manifest.json").write_text("{broken")
    assert main(["--root", root, "gc", "--keep", "1", "--pins", str(models)]) == 2  # fail closed
    assert len(store.versions("item_emb")) == 4
