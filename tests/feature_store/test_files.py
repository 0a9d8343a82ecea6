"""The shared durable-write and digest helpers, and the code digest that goes into every recipe."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from common import lineage
from common.files import atomic_path, atomic_write_json, atomic_write_text, canonical_json, digest, json_digest
from common.lineage import code_digest


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"b": 1, "a": np.float32(0.5)})
    assert json.loads(target.read_text()) == {"b": 1, "a": 0.5} and list(json.loads(target.read_text())) == ["b", "a"]
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text())["b"] == 1  # the old file is untouched
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # and no temp file is left
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_digests_are_canonical():
    assert json_digest({"a": 1, "b": [1, 2]}) == json_digest({"b": [1, 2], "a": 1})
    assert json_digest({"a": 1}) != json_digest({"a": 2})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert digest("x") == digest(b"x") and len(digest("x", 12)) == 12
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})


def test_code_digest_ignores_comments_and_docstrings_but_not_code(tmp_path, monkeypatch):
    pkg = tmp_path / "digest_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    mod = pkg / "producer.py"
    monkeypatch.syspath_prepend(str(tmp_path))

    def digest_of(source: str) -> str:
        mod.write_text(source)
        for cached in (lineage.module_digest, lineage.code_digest, lineage._tree, lineage.direct_imports):
            cached.cache_clear()
        sys.modules.pop("digest_probe_pkg.producer", None)
        return code_digest("digest_probe_pkg.producer")

    base = digest_of('"""Doc."""\ndef f(x):\n    return x + 1\n')
    assert digest_of('"""Other doc."""\n# a comment\ndef f(x):  # why\n    """f doc"""\n\n    return x + 1\n') == base
    assert digest_of('"""Doc."""\ndef f(x):\n    return x + 2\n') != base
    assert code_digest("augment.data.split", "augment.kinds") == code_digest("augment.kinds", "augment.data.split")
