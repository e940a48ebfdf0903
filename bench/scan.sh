#!/usr/bin/env bash
# bench/scan.sh: the time of the scan gate's decision once Trivy's JSON is
# read (Go benchmarks in internal/scan): 10 images with 1,000
# vulnerabilities each against an ignore file of 200 entries, half expired;
# and read + parse + decide of one 10,000-vulnerability report. Side by side,
# Trivy's own decision on the same report and ignores: trivy convert
# --exit-code --severity HIGH,CRITICAL --ignorefile .trivyignore.yaml (a
# whole process, start included, as a CI step would run it).
#
# Environment: BENCH_ROUNDS (default 5), TRIVY (default bin/trivy, built by
# scripts/ensure-trivy.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
ROUNDS="${BENCH_ROUNDS:-5}"
TRIVY="${TRIVY:-$PWD/bin/trivy}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "bench: the scan gate's decision (go test -bench internal/scan)"
out="$(GANTRY_BENCH_SCAN_DIR="$work" go test -run '^$' -bench 'Decide' -benchmem -count "$ROUNDS" ./internal/scan)"
echo "$out" | grep '^Benchmark'
best() { echo "$out" | awk -v b="$1" '$1 ~ "^"b"-" { if (min == "" || $3 < min) min = $3 } END { printf "%.1f", min / 1e6 }'; }
decide_ms=$(best BenchmarkDecide)
parse_ms=$(best BenchmarkParseAndDecide)
echo "bench: gantry decides 10,000 findings against 200 ignore entries in ${decide_ms} ms; reads, parses and decides a 10,000-vulnerability report in ${parse_ms} ms (best of $ROUNDS)"

if [ ! -x "$TRIVY" ]; then
	echo "bench: no Trivy at $TRIVY (scripts/ensure-trivy.sh builds it); no side-by-side run"
	exit 0
fi
now_ms() { date +%s%3N; }
best_trivy=0
for ((r = 0; r < ROUNDS; r++)); do
	t0=$(now_ms)
	rc=0
	"$TRIVY" convert --quiet --format json --output /dev/null --exit-code 3 --severity HIGH,CRITICAL \
		--ignorefile "$work/trivyignore.yaml" "$work/report.json" 2>"$work/trivy.err" || rc=$?
	t1=$(now_ms)
	if ((rc != 3)); then echo "bench: trivy convert exited $rc, want 3 (findings):" >&2; cat "$work/trivy.err" >&2; exit 1; fi
	d=$((t1 - t0))
	if ((best_trivy == 0 || d < best_trivy)); then best_trivy=$d; fi
done
echo "bench: trivy convert --exit-code on the same report and ignores: ${best_trivy} ms (a process, start included); gantry's read+parse+decide / trivy: $(awk "BEGIN{printf \"%.2f\", $parse_ms/($best_trivy>0?$best_trivy:1)}")"
