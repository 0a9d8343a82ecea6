"""Which code made a table: a digest of the modules that produce it, blind to comments, docstrings and layout.

A feature-table version is the hash of its recipe (input versions, settings, and this digest). Hashing the whole
package re-versioned every table on any edit; hashing the producing modules' syntax trees, without docstrings,
re-versions a table when the code that computes it changes and never for a comment or a reformat elsewhere.

    code_digest("augment.split", "augment.stages")
"""
from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache

from feature_store.files import digest


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=256)
def module_digest(module: str) -> str:
    """Digest of one module's syntax tree (comments, docstrings and formatting do not count)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"code_digest: {module!r} is not a Python source module")
    with open(spec.origin, encoding="utf-8") as f:
        tree = _strip_docstrings(ast.parse(f.read(), filename=spec.origin))
    return digest(ast.dump(tree, include_attributes=False))


def code_digest(*modules: str) -> str:
    """One digest over the named modules (order-insensitive)."""
    if not modules:
        raise ValueError("code_digest needs at least one module")
    return digest("\n".join(f"{m}:{module_digest(m)}" for m in sorted(set(modules))), 12)
