#!/usr/bin/env bash
# The test command: install with test extras (and Debian's chromium, PostgreSQL, redis-server), then run
# the offline test suite. Playwright drives the system chromium; it never downloads a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
# Debian's chromium (browser tests), PostgreSQL and redis-server (the store and shared-state tests start them).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's ${missing[*]} for the tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
export HF_HUB_OFFLINE=1
# One pytest worker per core (pytest-xdist; each worker's torch gets its share of the cores, tests/conftest.py), idle
# workers take tests from busy ones: most of the suite waits on servers, browsers and subprocesses, so two workers
# on two cores finish in about 60% of one's time. `bash scripts/test.sh -n 0` runs it in one process.
exec .venv/bin/python -m pytest -n "${CSBOT_TEST_WORKERS:-auto}" --dist worksteal "$@"
