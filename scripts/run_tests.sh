#!/usr/bin/env bash
# Run the test suite in the project venv. pytest's exit 5 (nothing collected,
# e.g. a filter that matched no test) is reported, not treated as a crash.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run_tests: pytest collected no tests (exit 5)"
    exit 0
fi
exit "$rc"
