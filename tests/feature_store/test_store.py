"""Versioned store: ids from recipes, manifests, layout readable by DuckDB/pandas, concurrent readers."""
from __future__ import annotations

import hashlib
import json
import threading

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.files import canonical_json
from feature_store import NotFound, vector_matrix
from feature_store.maintenance import validate

RECIPE = {"source_sha256": "abc", "model": "m1", "template": "item_knowledge_v1", "code": "v0"}


def test_version_is_hash_of_canonical_recipe(store, item_spec, make_items):
    ref = store.publish(item_spec, make_items(), recipe=RECIPE)
    want = hashlib.sha256(json.dumps(RECIPE, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    assert ref.version == want
    reordered = dict(reversed(list(RECIPE.items())))
    assert store.publish(item_spec, make_items(), recipe=reordered).version == want
    assert store.publish(item_spec, make_items(), recipe={**RECIPE, "model": "m2"}).version != want
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_publish_read_and_manifest(store, item_spec, make_items):
    df = make_items()
    ref = store.publish(item_spec, df, recipe=RECIPE, config={"run": "x"})
    assert ref.rows == len(df) and ref.path.name == f"version={ref.version}"
    t = store.read("item_emb")
    assert t.schema == item_spec.arrow_schema()
    np.testing.assert_array_equal(vector_matrix(t["emb"]), np.stack(df["emb"]))
    m = store.manifest("item_emb", ref.version)
    assert m["rows"] == len(df) and m["recipe"] == RECIPE and m["config"] == {"run": "x"}
    assert m["files"][0]["sha256"] == hashlib.sha256((ref.path / "part-0.parquet").read_bytes()).hexdigest()
    assert m["event_time"] == {"min": "1970-01-01T00:00:00+00:00", "max": "1970-01-01T00:03:20+00:00"}
    assert m["created_at"].endswith("+00:00") and m["code_version"]
    assert store.spec("item_emb") == item_spec
    assert store.read("item_emb", columns=["item_id"]).column_names == ["item_id"]
    with pytest.raises(ValueError, match="no column 'nope'"):
        store.read("item_emb", columns=["nope"])
    pdf = store.read_pandas("item_emb")
    assert isinstance(pdf["emb"].iloc[0], np.ndarray)


def test_latest_versions_and_prefix_resolution(store, item_spec, make_items):
    a = store.publish(item_spec, make_items(gen=1), recipe={**RECIPE, "n": 1})
    b = store.publish(item_spec, make_items(gen=2), recipe={**RECIPE, "n": 2})
    assert store.resolve("item_emb") == b.version
    assert [v["version"] for v in store.versions("item_emb")] == [b.version, a.version]
    assert store.resolve("item_emb", a.version[:6]) == a.version
    assert store.tables() == ["item_emb"]
    # Re-publishing the first recipe keeps that version's bytes (a version id names one table) and makes it latest.
    c = store.publish(item_spec, make_items(n_items=5, gen=3), recipe={**RECIPE, "n": 1})
    assert c.version == a.version and not c.written and store.resolve("item_emb") == a.version
    t = store.read("item_emb", a.version)
    assert t.num_rows == a.rows and set(vector_matrix(t["emb"])[:, 0]) == {1.0}
    assert len(list((store.root / "item_emb" / "_data").iterdir())) == 2  # nothing new was written
    with pytest.raises(NotFound, match="version 'ffff' not found"):
        store.resolve("item_emb", "ffff")
    with pytest.raises(NotFound, match="unknown table 'nope'"):
        store.read("nope")


def test_layout_readable_by_duckdb_and_pandas(store, item_spec, make_items):
    a = store.publish(item_spec, make_items(), recipe={**RECIPE, "n": 1})
    b = store.publish(item_spec, make_items(n_items=4), recipe={**RECIPE, "n": 2})
    glob = str(store.root / "item_emb" / "*" / "*.parquet")
    got = dict(duckdb.sql(f"SELECT version, count(*) FROM read_parquet('{glob}', hive_partitioning=true) "
                          f"GROUP BY ALL").fetchall())
    assert got == {a.version: 60, b.version: 12}
    pdf = pd.read_parquet(store.root / "item_emb")  # pyarrow dataset skips _data/ (leading underscore)
    assert len(pdf) == 72 and set(pdf["version"].astype(str)) == {a.version, b.version}


def test_vector_matrix_zero_copy_slices_and_nulls():
    mat = np.arange(20, dtype=np.float32).reshape(5, 4)
    arr = pa.FixedSizeListArray.from_arrays(pa.array(mat.ravel()), 4)
    out = vector_matrix(pa.chunked_array([arr]))
    assert np.shares_memory(out, np.frombuffer(arr.values.buffers()[1], dtype=np.float32))
    np.testing.assert_array_equal(vector_matrix(arr.slice(2, 2)), mat[2:4])
    np.testing.assert_array_equal(vector_matrix(pa.chunked_array([arr.slice(0, 2), arr.slice(2)])), mat)
    with_null = arr.take(pa.array([0, None, 4]))
    np.testing.assert_array_equal(vector_matrix(with_null), np.stack([mat[0], np.zeros(4), mat[4]]))
    half = pa.FixedSizeListArray.from_arrays(pa.array(mat.ravel().astype(np.float16)), 4)
    assert vector_matrix(half).dtype == np.float32


def test_validate_detects_corruption(store, item_spec, make_items):
    ref = store.publish(item_spec, make_items(), recipe=RECIPE)
    assert all(r["ok"] for r in validate(store))
    path = ref.path / "part-0.parquet"
    t = pq.read_table(path)
    pq.write_table(t.slice(0, 10), path)  # same schema, fewer rows, different bytes
    (res,) = validate(store, "item_emb", ref.version)
    assert not res["ok"]
    assert any("sha256" in p for p in res["problems"]) and any("10 rows" in p for p in res["problems"])


def test_publish_rejects_bad_recipe(store, item_spec, make_items):
    with pytest.raises(ValueError, match="recipe"):
        store.publish(item_spec, make_items(), recipe={})
    with pytest.raises(ValueError):
        store.publish(item_spec, make_items(), recipe={"x": float("nan")})
    assert store.tables() == []


def test_concurrent_reader_never_sees_partial_table(store, item_spec, make_items):
    """A reader thread loops over latest and a fixed version while the main thread publishes new versions and
    re-publishes the fixed recipe (which must keep its first bytes)."""
    frames = {g: make_items(n_items=50 + 25 * g, n_times=4, gen=float(g)) for g in range(3)}
    rows_of_gen = {float(g): len(df) for g, df in frames.items()}
    store.publish(item_spec, frames[0], recipe={"fixed": True})
    stop, errors, reads = threading.Event(), [], [0]

    def reader() -> None:
        while not stop.is_set():
            for version in ("latest", store.resolve("item_emb", "latest")):
                try:
                    t, m = store._read_with_manifest("item_emb", version)
                    gens = set(vector_matrix(t["emb"])[:, 0].tolist())
                    assert len(gens) == 1, gens
                    assert t.num_rows == m["rows"] == rows_of_gen[gens.pop()]
                    reads[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure is the test failing
                    errors.append(repr(e))
                    stop.set()

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(30):
            g = i % 3
            store.publish(item_spec, frames[g], recipe={"fixed": True})  # reused: the bytes of gen 0 stay
            store.publish(item_spec, frames[g], recipe={"gen": g, "i": i})  # a new version each time
    finally:
        stop.set()
        th.join()
    assert not errors, errors[:3]
    assert reads[0] > 10
    assert all(r["ok"] for r in validate(store))


def test_same_recipe_reuses_the_version_and_its_bytes(store, item_spec, make_items):
    first = store.publish(item_spec, make_items(n_items=10, gen=0.0), recipe={"r": 1})
    data = (first.path / "part-0.parquet").read_bytes()
    manifest = store.manifest("item_emb", first.version)
    other = store.publish(item_spec, make_items(n_items=10, gen=1.0), recipe={"r": 2})
    assert store.resolve("item_emb") == other.version
    again = store.publish(item_spec, make_items(n_items=12, gen=5.0), recipe={"r": 1})
    assert again.version == first.version and again.rows == first.rows and not again.written
    assert (again.path / "part-0.parquet").read_bytes() == data
    assert store.manifest("item_emb", first.version)["publish_id"] == manifest["publish_id"]
    assert store.resolve("item_emb") == first.version  # re-publishing makes it latest again
    assert store.existing("item_emb", other.version).rows == other.rows
    assert store.existing("item_emb", "0" * 12) is None
