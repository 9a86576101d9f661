#!/usr/bin/env bash
# Set up .venv (idempotent) and run the whole test suite. Exit code 5 (no tests collected) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# Tests run in parallel workers (pytest-xdist), one per core up to 4: much of the suite waits on sandboxed
# subprocesses, timeouts and local servers, so 2 workers on 2 cores take about 0.65x the sequential time.
# Pass -n 0 to run them one at a time.
.venv/bin/python -m pytest -q -n auto --maxprocesses 4 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
