"""Which code made a table or a model: a digest over every in-repo module an entry module imports, directly or
not, each blind to comments, docstrings and layout.

A feature-table version is the hash of its recipe (input versions, settings, and this digest); a retrain's run id
likewise. The modules are found, not listed: the entry module's syntax tree is walked for imports (at any depth,
so imports inside functions count), each import of a product package is followed to its file, and so on until
nothing new turns up; parent packages count too, since importing `a.b` runs `a/__init__.py`. So an edit to any
module that can shape the result re-versions it, and a comment or a reformat re-versions nothing.

    code_digest("augment.data.split_stage")     # the split stage and everything it imports
    code_closure("models.retrain")              # the modules behind that digest, sorted
"""
from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

from common.files import digest

# The product packages: an import of anything else (stdlib, third party) is outside the code identity.
PRODUCT_PACKAGES = ("augment", "common", "configs", "feature_store", "models", "ops")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _package_dir(top: str) -> Path | None:
    """Where a top-level product package lives (found without importing any of its submodules)."""
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def module_file(module: str) -> Path | None:
    """The source file of an in-repo module or package, None when `module` is not one."""
    top, _, rest = module.partition(".")
    base = _package_dir(top)
    if base is None:
        return None
    path = base.joinpath(*rest.split(".")) if rest else base
    if path.is_dir() and (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


@lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    path = module_file(module)
    if path is None:
        raise ValueError(f"code_digest: {module!r} is not a Python source module of this repository")
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _nearest_module(name: str, tops: frozenset[str]) -> str | None:
    """`name` or its longest prefix that is a module of the packages `tops` (`from a.b import c`: c may be a
    function of a.b)."""
    if name.partition(".")[0] not in tops:
        return None
    while name:
        if module_file(name) is not None:
            return name
        name = name.rpartition(".")[0]
    return None


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every dotted name the import statements of `module` (any depth) name, relative imports made absolute; for
    `from a.b import c` both `a.b.c` and `a.b` (c may be a submodule or a name defined in a.b)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            names += [f"{base}.{a.name}" for a in node.names] + [base]
    return names


@lru_cache(maxsize=None)
def direct_imports(module: str) -> frozenset[str]:
    """The in-repo modules `module` imports anywhere in its body, plus the parent packages each import runs (the
    product packages, and the module's own top-level package when it is outside them)."""
    tops = frozenset((*PRODUCT_PACKAGES, module.partition(".")[0]))
    is_package = module_file(module).name == "__init__.py"
    found: set[str] = set()
    for name in imported_names(_tree(module), module, is_package):
        hit = _nearest_module(name, tops)
        if hit is not None:
            parts = hit.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    found.discard(module)
    return frozenset(found)


def code_closure(*entries: str) -> tuple[str, ...]:
    """Every in-repo module the entry modules import, directly or not, and the entries themselves (sorted)."""
    seen: set[str] = set()
    # An entry's parent packages run when it is imported, as an imported module's do (direct_imports).
    todo = [".".join(e.split(".")[:i]) for e in entries for i in range(1, e.count(".") + 2)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        _tree(module)  # fails loudly for a name that is not an in-repo module
        seen.add(module)
        todo.extend(direct_imports(module) - seen)
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def module_digest(module: str) -> str:
    """Digest of one module's syntax tree (comments, docstrings and formatting do not count)."""
    return digest(ast.dump(_strip_docstrings(_tree(module)), include_attributes=False))


@lru_cache(maxsize=256)
def code_digest(*entries: str) -> str:
    """One digest over the entry modules and everything they import in this repository (order-insensitive)."""
    if not entries:
        raise ValueError("code_digest needs at least one module")
    return digest("\n".join(f"{m}:{module_digest(m)}" for m in code_closure(*entries)), 12)
