#!/usr/bin/env bash
# run-tests.sh runs gantry's test suite (unit and Docker-backed integration tests),
# keeps the full verbose log in bin/test.log, and ends with one summary line:
#   tests: N passed, N failed, N skipped
set -euo pipefail

cd "$(dirname "$0")/.."
mkdir -p bin
LOG=bin/test.log
TIMEOUT="${GANTRY_TEST_TIMEOUT:-20m}"

printf 'test: go test -count=1 -timeout %s ./... (full log: %s)\n' "$TIMEOUT" "$LOG"

# -v gives per-test PASS/FAIL/SKIP lines to count; the terminal gets everything
# except the === RUN/PAUSE/CONT/NAME chatter and passing subtests.
set +e
go test -count=1 -timeout "$TIMEOUT" -v ./... 2>&1 | tee "$LOG" |
	grep --line-buffered -vE '^[[:space:]]*=== (RUN|PAUSE|CONT|NAME)|^[[:space:]]+--- PASS: '
rc=${PIPESTATUS[0]}
set -e

# Top-level tests only (subtests are indented).
passed=$(grep -cE '^--- PASS: ' "$LOG" || true)
failed=$(grep -cE '^--- FAIL: ' "$LOG" || true)
skipped=$(grep -cE '^--- SKIP: ' "$LOG" || true)
# A package that fails to build, panics or times out may report no --- FAIL line.
pkgfail=$(grep -cE '^FAIL[[:space:]]' "$LOG" || true)
if [ "$rc" -ne 0 ] && [ "$failed" -lt "$pkgfail" ]; then
	failed=$pkgfail
fi
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	failed=1
fi
echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$rc"
