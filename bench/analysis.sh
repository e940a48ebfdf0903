#!/usr/bin/env bash
# bench/analysis.sh: how fast a failing analysis gets the previous release
# serving. Release 1.1.0 of the example app passes its health gate and serves
# under a bounded load (GET /version every 20 ms); then half of its requests
# fail while its health check stays green. A real Prometheus (Debian's, on
# 127.0.0.1:26090, scraping every 500 ms) feeds the analysis (1 s interval),
# which fails in the watch window, and gantry rolls back to 1.0.0. Measured
# from the failing measurement (the analysis's decided_at) to GET /version
# answering 1.0.0, and, for information, from the moment the errors began
# (which adds Prometheus's scrape interval and rate window).
# Goal: within one analysis interval plus 1 s.
#
# The peer a user would otherwise have is Argo Rollouts or Flagger, which
# need Kubernetes; on a Docker host there is none to run side by side.
#
# Environment: GANTRY (default bin/gantry), BENCH_ANALYSIS_ROUNDS (3),
# BENCH_SKIP_IMAGES=1 to use the example images already built.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GANTRY="${GANTRY:-$PWD/bin/gantry}"
ROUNDS="${BENCH_ANALYSIS_ROUNDS:-3}"

bash scripts/ensure-prometheus.sh >/dev/null
mkdir -p bin
go build -o bin/analysisbench ./bench/cmd/analysisbench
[ -x "$GANTRY" ] || go build -o "$GANTRY" ./cmd/gantry
if [ -z "${BENCH_SKIP_IMAGES:-}" ]; then
	# The two releases, built from the current example app (they export
	# http_requests_total and take POST /errors).
	bash examples/build.sh 1.0.0 healthy gantry-example/app:1.0.0 >/dev/null
	bash examples/build.sh 1.1.0 healthy gantry-example/app:1.1.0 >/dev/null
fi
echo "bench: analysis rollback, $ROUNDS rounds (about a minute each)"
bin/analysisbench -gantry "$GANTRY" -rounds "$ROUNDS"
