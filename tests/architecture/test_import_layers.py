"""The import graph of the product packages: no cycles, and no edge from a lower layer up.

Layers, low to high: common < configs < feature_store < augment's kinds and embedded models < its stage seam
(publishing) < augment's rooms data < text < llm < encode < augment's root (stages, CLI) < ops < dags; models sits beside
augment (models never imports augment, nor augment models) and models.serving above the rest of models.
A module may import its own room freely (the no-cycle check keeps that honest) and any lower layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from common.lineage import PRODUCT_PACKAGES, imported_names, module_file

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
# (module prefix, layer): the longest matching prefix decides a module's room.
LAYERS = {
    "common": 0, "configs": 1, "feature_store": 2,
    "augment.kinds": 3, "augment.embedded_models": 3, "augment.publishing": 4,
    "augment.data": 5, "augment.text": 6, "augment.llm": 7, "augment.encode": 8, "augment": 9,
    "models": 3, "models.serving": 4,
    "ops": 10, "dags": 11,
}
SIBLINGS = {("augment", "models"), ("models", "augment")}  # never either way, whatever the layers say


def modules() -> list[str]:
    out = []
    for top in (*PRODUCT_PACKAGES, "dags"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def room(module: str) -> str:
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def explicit_imports(module: str, known: set[str]) -> set[str]:
    """What `module` names in its import statements (any depth), resolved to known modules (no parent packages:
    `import a.b` is an edge to a.b, not to a)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    found = set()
    for name in imported_names(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py"):
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: explicit_imports(m, known) for m in mods}


def test_every_module_has_a_layer():
    assert all(room(m) for m in modules())
    assert module_file("augment.stages") is not None


def test_no_import_cycles():
    g = graph()
    names = sorted(g)
    index = {m: i for i, m in enumerate(names)}
    rows, cols = zip(*[(index[a], index[b]) for a, deps in g.items() for b in deps])
    n, labels = connected_components(csr_matrix(([1] * len(rows), (rows, cols)), shape=(len(names),) * 2),
                                     directed=True, connection="strong")
    cycles = [sorted(m for m in names if labels[index[m]] == c) for c in range(n)]
    assert [c for c in cycles if len(c) > 1] == []


def test_no_upward_imports():
    bad = []
    for a, deps in graph().items():
        for b in deps:
            ra, rb = room(a), room(b)
            if (ra.split(".")[0], rb.split(".")[0]) in SIBLINGS:
                bad.append(f"{a} -> {b} (augment and models never import each other)")
            elif ra != rb and LAYERS[rb] >= LAYERS[ra] and not (ra.startswith(rb + ".") and b == rb):
                bad.append(f"{a} ({ra}, layer {LAYERS[ra]}) -> {b} ({rb}, layer {LAYERS[rb]})")
    assert bad == []
