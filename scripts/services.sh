#!/usr/bin/env bash
# Install the Debian services that the production-profile tests and benchmarks start themselves on 127.0.0.1:
# redis-server (the Celery broker) and postgresql (the metadata DB). Idempotent: does nothing when both are there.
#
#   scripts/services.sh          # what the tests marked `services` run first (tests/conftest.py, once per session)
#
# Nothing is started here and nothing is configured: ops/local_airflow.py starts a private redis-server and a
# private Postgres cluster (initdb in a temporary directory) per deployment, on free ports, and stops them.
# Installing needs root (apt-get); without root and with a service missing this exits 1 saying what to install.
set -euo pipefail

has_postgres() {  # Debian keeps initdb/pg_ctl off PATH, under /usr/lib/postgresql/<major>/bin
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
has_postgres || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "[services] error: ${missing[*]} not installed and not root: run 'sudo apt-get install -y ${missing[*]}'" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 \
  || { echo "[services] error: ${missing[*]} not installed and no apt-get: install them by hand" >&2; exit 1; }

# Two first runs at once (tests and the main job) must not fight over dpkg's lock.
exec 8>/tmp/llmfa-services.lock
flock 8
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
has_postgres || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[services] installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2
command -v redis-server >/dev/null 2>&1 || { echo "[services] error: redis-server still missing" >&2; exit 1; }
has_postgres || { echo "[services] error: postgresql's initdb still missing" >&2; exit 1; }
echo "[services] ready: ${missing[*]}" >&2
