#!/usr/bin/env bash
# The test command: set up the environment (scripts/env.sh), then run every test, slow ones included (real vLLM on CPU, real
# sentence-transformers, real Airflow (dag.test(), a real scheduler, Celery workers with Redis and Postgres), real
# LightGBM/DeepCTR-Torch training).
#
#   scripts/run_tests.sh                 # everything (what CI runs)
#   scripts/run_tests.sh -m "not slow"   # the fast subset while developing; extra args go to pytest
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$("$ROOT/scripts/env.sh") || { echo "error: environment set-up failed (see above)" >&2; exit 1; }
# The servers the production-profile tests start on 127.0.0.1 (redis-server, postgresql): installed when missing.
"$ROOT/scripts/services.sh" || { echo "error: service set-up failed (see above)" >&2; exit 1; }
[ -x "$PY" ] || { echo "error: scripts/env.sh printed no python ($PY)" >&2; exit 1; }
# The test environment (offline hubs, one OMP thread, no task retries) is set by tests/conftest.py, so a bare
# `pytest` in the activated venv runs exactly what this script runs.
cd "$ROOT"
set +e
"$PY" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
