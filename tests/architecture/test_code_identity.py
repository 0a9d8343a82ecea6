"""Code identity: a table's version and a retrain's run id cover every in-repo module that can shape them.

The digest (common/lineage.py) is computed from the import graph, not from a list; these tests hold it to what
Python really loads (every stage module and every trainer, in a fresh interpreter) and show that an edit to a
module the old hand-kept lists missed (models/taste.py, augment/data/negatives.py) now re-versions the result,
while a comment does not.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from augment import stages
from common.lineage import PRODUCT_PACKAGES, code_closure, code_digest
from models.backbone_names import BACKBONES

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
# Every module whose __name__ a stage passes as the `code` of the tables it publishes, and the other entries.
STAGE_MODULES = sorted({getattr(stages, name).__module__ for name in stages.__all__
                        if callable(getattr(stages, name)) and getattr(stages, name).__module__.endswith("_stage")})
ENTRIES = [*STAGE_MODULES, "augment.encode.behaviour_encoder", "models.retrain"]

LOADED = """
import json, sys, importlib
entry = sys.argv[1]
importlib.import_module(entry)
if entry == "models.retrain":  # the trainers and saved-model classes are imported lazily, per backbone
    from models.backbones import model_class, trainer
    from models.backbone_names import BACKBONES
    for name in BACKBONES:
        model_class(name)
        trainer(name)
    import models.train_deepctr, models.train_lightgbm  # what trainer(name)() imports when it runs
tops = set(sys.argv[2].split(","))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in tops)))
"""


def test_the_stage_modules_are_found():
    assert "augment.data.ingest_stage" in STAGE_MODULES and "augment.llm.generate_stage" in STAGE_MODULES
    assert len(STAGE_MODULES) >= 8 and "lightgbm" in BACKBONES


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_module_python_loads_is_inside_the_digest(entry):
    out = subprocess.run([sys.executable, "-c", LOADED, entry, ",".join(PRODUCT_PACKAGES)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=240)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded - set(code_closure(entry)) == set()


def test_the_modules_the_old_lists_missed_are_covered():
    assert {"models.taste", "models.history", "common.files"} <= set(code_closure("models.retrain"))
    assert {"augment.data.negatives", "augment.data.sorting", "common.id_keys"} <= set(
        code_closure("augment.data.split_stage"))
    assert "common.id_keys" in code_closure("augment.data.ingest_stage")
    # ... and an unrelated room is not: an edit to the LLM code does not re-version the ingested tables.
    assert not any(m.startswith("augment.llm") for m in code_closure("augment.data.ingest_stage"))


def _digest_in_copy(tmp_path: Path, edit: tuple[str, str] | None, entry: str) -> str:
    """code_digest(entry) in a fresh interpreter over a copy of the product packages, one module edited."""
    copy = tmp_path / "repo"
    if copy.exists():
        shutil.rmtree(copy)
    for top in PRODUCT_PACKAGES:
        shutil.copytree(ROOT / top, copy / top, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        path = copy / edit[0]
        path.write_text(path.read_text(encoding="utf-8") + edit[1], encoding="utf-8")
    # For the retrain: the very function its run id and model manifests take the code digest from.
    code = ("import sys, common.lineage as l; assert l.__file__.startswith(sys.argv[2]), l.__file__; "
            "import models.retrain as r; "
            "print(r.model_code_digest() if sys.argv[1] == 'models.retrain' else l.code_digest(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, entry, str(copy)], cwd=copy, capture_output=True,
                         text=True, check=True, timeout=120, env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    return out.stdout.strip()


@pytest.mark.slow  # ~15 s each (fresh interpreters import torch/pandas twice): over the fast tier's 10 s per test (tests/conftest.py)
@pytest.mark.parametrize("entry, module", [("models.retrain", "models/taste.py"),
                                           ("augment.data.split_stage", "augment/data/negatives.py")])
def test_editing_a_module_the_entry_imports_changes_its_digest(tmp_path, entry, module):
    base = _digest_in_copy(tmp_path, None, entry)
    assert base == code_digest(entry)  # the copy is the same code
    assert _digest_in_copy(tmp_path, (module, "\n# only a comment\n"), entry) == base
    assert _digest_in_copy(tmp_path, (module, "\n_EDITED = 1\n"), entry) != base

