#!/usr/bin/env bash
# Run all feature_store benchmarks (see run_all.py); extra arguments are passed through.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PY:-/root/.cache/llmfa-probe-venv/bin/python}"
exec "$PY" bench/feature_store/run_all.py "$@"
