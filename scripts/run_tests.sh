#!/usr/bin/env bash
# The test command: set up the environment (scripts/env.sh), run the linter (ruff), then pytest. With no arguments it
# runs every test, slow ones included (real vLLM on CPU, real sentence-transformers, real Airflow: dag.test(), a real
# scheduler, Celery workers with Redis and Postgres; real LightGBM/DeepCTR-Torch training). That is what CI runs.
#
#   scripts/run_tests.sh                      # lint + everything (what CI, .ci/run, runs; tens of minutes)
#   scripts/run_tests.sh -m "not slow"        # lint + the fast tier: ~2.5 min on a 2-core box (384 tests, 2026-12-07),
#                                             # no model, no Redis/Postgres, no download
#   scripts/run_tests.sh -m "vllm"            # extra args go to pytest; markers combine: -m "airflow and not vllm"
#
# Tiers (markers registered in pyproject.toml; the table and the rule are in tests/conftest.py's docstring):
#   vllm      real LLM or real encoder (vLLM, transformers, sentence-transformers)   -> slow
#   services  redis-server / Postgres started by the test (Debian packages)          -> slow
#   network   downloads from PyPI                                                     -> slow
#   airflow   runs Airflow (DagBag parse is fast; dag.test()/scheduler tests also carry vllm)
#   slow      more than ~10 s for any other reason; `-m "not slow"` is the fast tier
#
# Redis and Postgres are installed (scripts/services.sh, apt-get when missing) by the `services` tests' own session
# fixture, only when such a test is selected: the fast tier never installs anything, and CI (everything) still does.
#
# Lint: `python -m ruff check .` (rules in pyproject.toml [tool.ruff]). A lint failure does not stop the tests (one
# run reports both); the script exits non-zero if either failed. Exit code 5 (pytest collected nothing) is a failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$("$ROOT/scripts/env.sh") || { echo "error: environment set-up failed (see above)" >&2; exit 1; }
[ -x "$PY" ] || { echo "error: scripts/env.sh printed no python ($PY)" >&2; exit 1; }
# The test environment (offline hubs, one OMP thread, no task retries) is set by tests/conftest.py, so a bare
# `pytest` in the activated venv runs exactly what this script runs.
cd "$ROOT"

"$PY" -m ruff --version >/dev/null 2>&1 \
  || { echo "error: ruff is not installed in $PY's environment (it belongs to the [test] extra: pip install -e '.[test]')" >&2; exit 1; }
set +e
"$PY" -m ruff check .
lint_rc=$?
"$PY" -m pytest "$@"
rc=$?
set -e
if [ "$lint_rc" -ne 0 ]; then
  echo "error: ruff check found problems (see above; tests ran anyway, pytest exit code $rc)" >&2
fi
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
[ "$rc" -ne 0 ] && exit "$rc"
[ "$lint_rc" -ne 0 ] && exit 1
exit 0
