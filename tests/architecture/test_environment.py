"""Every LLMFA_* environment variable named anywhere in the tree is declared in configs/environment.py (the one
table of them), and that module's docstring table is the one it generates."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from configs import environment

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
DIRS = ("augment", "common", "configs", "feature_store", "models", "ops", "dags", "scripts", "bench", "tests")
SUFFIXES = {".py", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".md"}


def names_in_tree() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for top in DIRS:
        for path in (ROOT / top).rglob("*"):
            if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                for name in re.findall(r"LLMFA_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8", errors="ignore")):
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_environment_variable_is_declared():
    declared = set(environment.VARIABLES) | set(environment.REMOVED)
    undeclared = {name: sorted(files) for name, files in names_in_tree().items() if name not in declared}
    assert undeclared == {}, "declare these in configs/environment.py (or stop reading them)"


def test_removed_variables_are_only_named_where_they_are_rejected():
    found = names_in_tree()
    for name in environment.REMOVED:
        assert found.get(name, set()) <= {"configs/environment.py", "tests/architecture/test_environment.py",
                                          "tests/dags/test_dags.py"}, name


def test_docstring_table_is_the_generated_one():
    assert environment.table() in environment.__doc__
