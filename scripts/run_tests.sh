#!/usr/bin/env bash
# The test command: set up the environment, then run every test, slow ones included (real vLLM on CPU, real
# sentence-transformers, real Airflow dag.test(), real LightGBM/DeepCTR-Torch training).
#
#   scripts/run_tests.sh                 # everything (what CI runs)
#   scripts/run_tests.sh -m "not slow"   # the fast subset while developing; extra args go to pytest
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$("$ROOT/scripts/env.sh" | tail -n 1)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} LLMFA_TASK_RETRIES=0
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
