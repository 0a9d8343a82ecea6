"""Feature tables on an object store: the FeatureStore API against a real S3-compatible server (moto's server mode,
a separate process on 127.0.0.1 started by the `s3_server` fixture), compared with the local store on the same
inputs; upkeep (validate / diff / gc with a grace period); two publishers of one version; any fsspec filesystem."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.files import canonical_json
from feature_store import FeatureStore, OnlineStore, point_in_time_join, vector_matrix
from feature_store.cli import main
from feature_store.locations import open_store
from feature_store.maintenance import diff, gc, validate
from feature_store.object_store import ObjectFeatureStore


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.bucket()


@pytest.fixture
def s3_store(s3_server, bucket) -> ObjectFeatureStore:
    return open_store(f"s3://{bucket}/features", s3=s3_server.options)


def _objects(s3_server, bucket: str) -> list[str]:
    return [k.removeprefix("features/") for k in s3_server.keys(bucket)]


def _prefixes(s3_server, bucket: str, table: str = "item_emb") -> set[str]:
    # ("<table>/_data/" itself may exist as an empty directory marker: pyarrow's delete_dir leaves one)
    return {k.split("/")[2] for k in _objects(s3_server, bucket) if k.startswith(f"{table}/_data/")} - {""}


def test_publish_read_resolve_versions_latest_reuse_on_s3(s3_store, s3_server, bucket, store, item_spec,
                                                          make_items):
    d1, d2 = make_items(gen=1.0), make_items(seed=1, gen=2.0)
    refs = {}
    for st in (store, s3_store):  # the local store on the same inputs is the reference
        refs[st.uri] = [st.publish(item_spec, d1, recipe={"g": 1}), st.publish(item_spec, d2, recipe={"g": 2})]
    (l1, l2), (r1, r2) = refs[store.uri], refs[s3_store.uri]
    assert (r1.version, r2.version) == (l1.version, l2.version) and r1.written and r2.written
    assert r2.path == f"s3://{bucket}/features/item_emb/version={r2.version}"
    assert s3_store.tables() == ["item_emb"] and s3_store.resolve("item_emb") == r2.version
    assert s3_store.resolve("item_emb", r1.version[:5]) == r1.version
    assert [v["version"] for v in s3_store.versions("item_emb")] == [r2.version, r1.version]
    for ref in (r1, r2):
        got, want = s3_store.read("item_emb", ref.version), store.read("item_emb", ref.version)
        assert got.equals(want) and got.num_rows == ref.rows
        m, lm = s3_store.manifest("item_emb", ref.version), store.manifest("item_emb", ref.version)
        for key in ("version", "rows", "spec", "recipe", "event_time", "arrow_schema"):
            assert m[key] == lm[key], key
        # the manifest's checksum is the uploaded object's (computed while uploading)
        body = s3_server.client().get_object(Bucket=bucket, Key=f"features/item_emb/_data/{m['publish_id']}/"
                                             "part-0.parquet")["Body"].read()
        import hashlib
        assert m["files"][0]["sha256"] == hashlib.sha256(body).hexdigest() and m["files"][0]["bytes"] == len(body)
    assert s3_store.read_pandas("item_emb", columns=["item_id", "pop"]).shape == (len(d2), 2)

    # the same recipe again: reused, never rewritten (other data is ignored), and made latest
    before = _objects(s3_server, bucket)
    again = s3_store.publish(item_spec, make_items(seed=9, gen=9.0), recipe={"g": 1})
    assert not again.written and again.version == r1.version and s3_store.resolve("item_emb") == r1.version
    assert _objects(s3_server, bucket) == before
    assert vector_matrix(s3_store.read("item_emb")["emb"])[:, 0].tolist() == [1.0] * len(d1)
    assert s3_store.existing("item_emb", "f" * 12) is None and s3_store.reuse("item_emb", "f" * 12) is None

    # the layout: two immutable prefixes, one pointer per version, _latest; nothing else
    pids = {s3_store.manifest("item_emb", r.version)["publish_id"] for r in (r1, r2)}
    assert before == sorted([*(f"item_emb/_data/{p}/{f}" for p in pids for f in ("_manifest.json", "part-0.parquet")),
                             "item_emb/_latest", f"item_emb/version={r1.version}", f"item_emb/version={r2.version}"])
    pointer = s3_server.client().get_object(Bucket=bucket, Key=f"features/item_emb/version={r1.version}")
    assert pointer["Body"].read().decode() == canonical_json(
        {"format_version": 1, "publish_id": s3_store.manifest("item_emb", r1.version)["publish_id"],
         "version": r1.version})


def test_point_in_time_join_and_online_lookup_read_from_s3(s3_store, store, item_spec, make_items):
    items = make_items(n_items=30, n_times=3)
    for st in (store, s3_store):
        st.publish(item_spec, items, recipe={"g": 0})
    labels = pd.DataFrame({"item_id": [0, 1, 5, 29, 99, 3],
                           "event_timestamp": pd.to_datetime([0, 150, 250, 99, 500, -10], unit="s", utc=True)})
    joined = {st.uri: point_in_time_join(labels, st, {"item_emb": st.resolve("item_emb")}, prefix_features=True)
              for st in (store, s3_store)}
    assert joined[s3_store.uri].equals(joined[store.uri])
    got = joined[s3_store.uri]
    assert got["item_emb__missing"].to_pylist() == [False, False, False, False, True, True]
    online = {st.uri: OnlineStore(st, {"item_emb": "latest"}) for st in (store, s3_store)}
    keys = [0, 7, 29, 12345]
    a, b = online[s3_store.uri].table("item_emb"), online[store.uri].table("item_emb")
    np.testing.assert_array_equal(a.get_vectors("emb", keys), b.get_vectors("emb", keys))
    assert a.get(keys)["title"].tolist() == b.get(keys)["title"].tolist()
    assert a.unknown_count == 2 and a.version == s3_store.resolve("item_emb")  # 12345, asked twice


def test_validate_diff_and_gc_with_a_grace_period_on_s3(s3_store, s3_server, bucket, item_spec, make_items):
    import time

    refs = [s3_store.publish(item_spec, make_items(n_items=20 + i, seed=i, gen=float(i)), recipe={"g": i})
            for i in range(4)]
    v = [r.version for r in refs]
    assert all(r["ok"] for r in validate(s3_store)) and len(validate(s3_store)) == 4
    d = diff(s3_store, "item_emb", v[0], v[1])
    assert d["keys"] == {"only_v1": 0, "only_v2": 1, "both": 20} and d["recipe"] == {"g": [0, 1]}
    assert not d["same_data"] and d["rows"] == [60, 63]

    client = s3_server.client()
    # Leftover of a killed publish: a prefix with data but no manifest and no pointer.
    orphan = "features/item_emb/_data/0rphan"
    client.put_object(Bucket=bucket, Key=f"{orphan}/part-0.parquet", Body=b"half a table")

    # A reader resolves v[1] just before gc retires it: it must still finish on the same bytes.
    snap = s3_store.open_version("item_emb", v[1])
    pins = {"item_emb": {v[0]}}
    removed = gc(s3_store, keep=2, pins=pins, grace_seconds=30)
    assert [(r["reason"], r["path"]) for r in removed] == [
        ("old version", f"s3://{bucket}/features/item_emb/version={v[1]}")]  # pointer only; data waits
    assert [x["version"] for x in s3_store.versions("item_emb")] == [v[3], v[2], v[0]]
    assert snap.read().num_rows == 63 and vector_matrix(snap.read(["emb"])["emb"])[:, 0].max() == 1.0
    assert s3_store.existing("item_emb", v[1]) is None
    with pytest.raises(KeyError, match=f"version '{v[1]}' not found"):
        s3_store.read("item_emb", v[1])
    assert "0rphan" in _prefixes(s3_server, bucket)  # younger than the grace period: a publish may be running

    # An unfinished multipart upload (a publish killed mid-upload). moto reports one fixed initiation time (2010)
    # for every upload, so here it is always past the grace period; real S3 gives the true time.
    key = "features/item_emb/_data/killed/part-0.parquet"
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(Bucket=bucket, Key=key, PartNumber=1, UploadId=up["UploadId"], Body=b"x" * 1024)
    # Wait for the condition, not a fixed time: a grace period of 3 s (object times are whole seconds) is over for
    # every leftover once a dry run lists all three (a few seconds; the deadline only bounds a broken gc).
    expected = ["data of a retired version (grace period over)", "incomplete multipart upload",
                "leftover of an interrupted publish"]
    deadline = time.monotonic() + 30
    while True:
        removed = gc(s3_store, keep=2, pins=pins, grace_seconds=3, dry_run=True)
        if sorted(r["reason"] for r in removed) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(r["reason"] for r in removed) == expected, removed
    assert removed == gc(s3_store, keep=2, pins=pins, grace_seconds=3)
    live = {s3_store.manifest("item_emb", x)["publish_id"] for x in (v[0], v[2], v[3])}
    assert _prefixes(s3_server, bucket) == live  # pinned v[0] kept, the retired one and both leftovers gone
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert all(r["ok"] for r in validate(s3_store))
    assert gc(s3_store, keep=2, pins=pins, grace_seconds=0) == []  # nothing left to do

    # validate catches a corrupted object
    pid = s3_store.manifest("item_emb", v[3])["publish_id"]
    t = pa.table({"x": [1, 2]})
    sink = pa.BufferOutputStream()
    pq.write_table(t, sink)
    client.put_object(Bucket=bucket, Key=f"features/item_emb/_data/{pid}/part-0.parquet",
                      Body=sink.getvalue().to_pybytes())
    bad = [r for r in validate(s3_store) if not r["ok"]]
    assert [r["version"] for r in bad] == [v[3]] and "sha256" in bad[0]["problems"][0]


def test_two_publishers_of_one_version_the_first_pointer_wins(s3_server, bucket, tmp_path, item_spec, make_items):
    """Both pass the "already published?" check, both upload; one create-only pointer PUT wins, the loser drops
    its own prefix and returns the winner's version: one version id, one set of bytes. Same on the local store."""
    uri = f"s3://{bucket}/features"
    for kind in ("s3", "local"):
        stores = [open_store(uri, s3=s3_server.options) if kind == "s3" else FeatureStore(tmp_path / "fs")
                  for _ in range(2)]
        barrier = threading.Barrier(2)
        for st in stores:
            if kind == "s3":
                create = st._create_pointer
                st._create_pointer = lambda *a, _c=create: (barrier.wait(30), _c(*a))[1]
            else:
                swap = st._swap_in
                st._swap_in = lambda *a, _s=swap: (barrier.wait(30), _s(*a))[1]
        out: dict[int, object] = {}
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(
            i, stores[i].publish(item_spec, make_items(seed=i, gen=float(i + 1)), recipe={"same": True})))
            for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert sorted(r.written for r in out.values()) == [False, True], kind
        assert out[0].version == out[1].version
        winner = next(i for i, r in out.items() if r.written)
        gens = vector_matrix(stores[0].read("item_emb", out[0].version)["emb"])[:, 0]
        assert set(gens.tolist()) == {float(winner + 1)}, kind
        if kind == "s3":
            assert len(_prefixes(s3_server, bucket)) == 1  # the loser deleted its own (never referenced) prefix
        else:
            assert len(list((tmp_path / "fs" / "item_emb" / "_data").iterdir())) == 1


def test_cli_on_s3_and_bad_input_gives_the_same_one_line_errors_as_local(s3_server, s3_store, store, bucket,
                                                                         item_spec, make_items, capsys):
    for st in (store, s3_store):
        st.publish(item_spec, make_items(), recipe={"g": 1})
    s3 = ["--root", f"s3://{bucket}/features", "--s3-endpoint", s3_server.endpoint, "--s3-region", "us-east-1"]
    local = ["--root", str(store.root)]
    assert main([*s3, "ls"]) == 0 and "item_emb" in capsys.readouterr().out
    assert main([*s3, "validate"]) == 0 and capsys.readouterr().out.startswith("OK   item_emb@")
    assert main([*s3, "inspect", "item_emb"]) == 0 and '"rows": 60' in capsys.readouterr().out

    def err(args) -> list[str]:
        assert main(args) == 2
        return capsys.readouterr().err.strip().splitlines()

    for case in (["inspect", "nope"], ["inspect", "item_emb@ffffff"], ["diff", "item_emb", "latest", "abc"],
                 ["gc", "--keep", "0"]):
        got, want = err([*s3, *case]), err([*local, *case])
        assert len(got) == 1 and got[0].replace(f"s3://{bucket}/features", "ROOT") == \
            want[0].replace(str(store.root), "ROOT"), (got, want)
    assert err(["--root", "s3://no-such-bucket-here/x", "--s3-endpoint", s3_server.endpoint, "ls"]) == [
        "error: --root 's3://no-such-bucket-here/x': bucket 'no-such-bucket-here' not found"]
    assert err(["--root", f"s3://{bucket}/x?colour=blue", "ls"])[0].startswith("error: s3://")
    assert len(err(["--root", f"s3://key:secret@{bucket}/x", "ls"])) == 1


def test_a_pyarrow_s3filesystem_given_as_is_keeps_create_only_pointers(s3_server, bucket, item_spec, make_items):
    """A caller's own pyarrow S3FileSystem (explicit keys here): the conditional PUT uses its endpoint and keys."""
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{s3_server.port}", scheme="http", region="us-east-1",
                           access_key="explicit", secret_key="explicit")
    st = open_store(f"{bucket}/own", filesystem=fs)
    assert st.is_object_store and st.ofs.atomic_create
    assert st.ofs.create_only(f"{bucket}/own/probe", b"1") and not st.ofs.create_only(f"{bucket}/own/probe", b"2")
    ref = st.publish(item_spec, make_items(), recipe={"g": 1})
    assert st.read("item_emb", ref.version).num_rows == 60 and all(r["ok"] for r in validate(st))
    assert not st.publish(item_spec, make_items(gen=5.0), recipe={"g": 1}).written


def test_any_fsspec_filesystem_through_pyarrow(item_spec, make_items):
    """The pointer layout on fsspec's in-memory filesystem wrapped as a pyarrow filesystem (what gcsfs, adlfs, ...
    look like to the store): publish, read, reuse, validate, gc."""
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    mem = fsspec.filesystem("memory")
    st = open_store("/llmfa-test/features", filesystem=PyFileSystem(FSSpecHandler(mem)))
    try:
        assert st.is_object_store and st.ofs.create_only("/llmfa-test/probe", b"1")
        assert not st.ofs.create_only("/llmfa-test/probe", b"2") and st.ofs.read_bytes("/llmfa-test/probe") == b"1"
        a = st.publish(item_spec, make_items(gen=1.0), recipe={"g": 1})
        b = st.publish(item_spec, make_items(gen=2.0), recipe={"g": 2})
        assert st.resolve("item_emb") == b.version and st.read("item_emb", a.version).num_rows == 60
        assert not st.publish(item_spec, make_items(), recipe={"g": 1}).written
        assert all(r["ok"] for r in validate(st))
        assert [r["reason"] for r in gc(st, keep=1, grace_seconds=0)] == []  # a: latest; b: newest
        st.publish(item_spec, make_items(gen=3.0), recipe={"g": 3})
        reasons = sorted(r["reason"] for r in gc(st, keep=1, grace_seconds=0))  # a and b go
        assert reasons == ["data of a retired version (grace period over)"] * 2 + ["old version"] * 2
        assert [v["version"] for v in st.versions("item_emb")] == [st.resolve("item_emb")]
        assert len(mem.ls("/llmfa-test/features/item_emb/_data")) == 1
    finally:
        mem.rm("/llmfa-test", recursive=True)


def test_run_config_names_the_store_and_keeps_credentials_out(tmp_path, s3_server):
    from pydantic import ValidationError

    from configs import RunConfig
    from feature_store.locations import open_run_store

    local = RunConfig(workdir=str(tmp_path / "w"))
    assert local.feature_store_uri == str(tmp_path / "w" / "feature_store")
    st = open_run_store(local)
    assert type(st) is FeatureStore and st.root == tmp_path / "w" / "feature_store"
    bucket = s3_server.bucket()
    cfg = RunConfig.model_validate({"workdir": str(tmp_path / "w"), "feature_store": {
        "uri": f"s3://{bucket}/runs/a", "s3": {"endpoint_override": s3_server.endpoint, "region": "us-east-1"}}})
    st = open_run_store(cfg)
    assert isinstance(st, ObjectFeatureStore) and st.uri == f"s3://{bucket}/runs/a"
    assert st.location() == {"uri": f"s3://{bucket}/runs/a", "s3": {
        "endpoint_override": f"127.0.0.1:{s3_server.port}", "region": "us-east-1", "scheme": "http"}}
    with pytest.raises(ValidationError, match="access_key"):
        RunConfig.model_validate({"feature_store": {"s3": {"access_key": "AKIA..."}}})
    with pytest.raises(ValidationError, match="credentials do not go in the config"):
        RunConfig.model_validate({"feature_store": {"uri": "s3://AKIA:secret@bucket/x"}})
    with pytest.raises(ValidationError, match="bukcet"):
        RunConfig.model_validate({"feature_store": {"bukcet": "x"}})
