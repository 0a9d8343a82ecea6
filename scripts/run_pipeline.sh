#!/usr/bin/env bash
# The main job: set up the environment, prepare the embedded models and data, and run the whole pipeline on
# MovieLens-100K through Airflow (augment_features, then retrain_ctr, with dag.test() through the LocalExecutor and
# an api-server on 127.0.0.1, on a local SQLite DB: scripts/run_dags.py).
#
#   scripts/run_pipeline.sh                              # full MovieLens-100K (configs/ml100k.yaml)
#   scripts/run_pipeline.sh --config configs/sample.yaml # a quick look: 60 users
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$("$ROOT/scripts/env.sh") || { echo "error: environment set-up failed (see above)" >&2; exit 1; }
[ -x "$PY" ] || { echo "error: scripts/env.sh printed no python ($PY)" >&2; exit 1; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export LLMFA_TASK_RETRIES=${LLMFA_TASK_RETRIES:-1} LLMFA_RETRY_DELAY_S=${LLMFA_RETRY_DELAY_S:-5}
cd "$ROOT"
exec "$PY" scripts/run_dags.py "$@"
