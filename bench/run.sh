#!/usr/bin/env bash
# bench/run.sh: `make bench`. Times gantry deploy against docker compose up -d --wait
# on the stacks in bench/stacks, side by side in one run, and prints the ratios,
# gantry's verdict latency and rollback time against the goals; then bench/push.sh
# (gantry push, crane push and docker push of a ~200 MB image into one registry, a
# second push, and the bytes a copy to another repository sends) and bench/version.sh
# (gantry tags against git log on 10,000 commits), bench/lint.sh and bench/server.sh
# (gantry server's list requests, /readyz and memory under a bounded load), and
# bench/scan.sh (the scan gate's decision over a large Trivy report, beside trivy convert),
# and bench/proxy.sh (the gantry proxy's throughput and latency beside nginx and direct),
# and bench/health.sh (the health view /health/{env} of 20 services, cached and not).
#
# Environment: GANTRY (gantry binary, default bin/gantry), BENCH_ROUNDS (default 3),
# BENCH_IMAGE / BENCH_BAD_IMAGE (default gantry-example/app:1.0.0 / :2.0.0-unhealthy),
# BENCH_SKIP_IMAGES=1 to use images already built, BENCH_PARTS (default
# "deploy push version lint server scan proxy analysis health swarm") to run only some parts. Extra arguments go to gantry-bench
# (e.g. -compose-only).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GANTRY="${GANTRY:-$PWD/bin/gantry}"
export GANTRY

PARTS=" ${BENCH_PARTS:-deploy push version lint server scan proxy analysis health swarm} "

# The deploy part and the proxy's deploy under load set gantry beside `docker compose`.
if [[ $PARTS == *" deploy "* || $PARTS == *" proxy "* ]]; then
	bash scripts/ensure-compose.sh
fi

if [[ $PARTS == *" deploy "* ]]; then
	if [ -z "${BENCH_SKIP_IMAGES:-}" ]; then
		echo "bench: building the example images (examples/build.sh --all)"
		bash examples/build.sh --all >/dev/null
	fi

	mkdir -p bin
	go build -o bin/gantry-bench ./bench/cmd/gantry-bench

	# gantry-bench cleans up after itself, also on Ctrl-C; this catches a kill of it.
	cleanup() { timeout 180 bin/gantry-bench -cleanup >/dev/null 2>&1 || true; }
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	bin/gantry-bench -dir bench "$@"
fi

# Pushes: gantry against crane and docker push, and the bytes of a copy.
if [[ $PARTS == *" push "* ]]; then bash bench/push.sh; fi

# Releases: version + tags against git log.
if [[ $PARTS == *" version "* ]]; then bash bench/version.sh; fi

# Lint: files per second over a generated corpus, and examples/ against 100 ms.
if [[ $PARTS == *" lint "* ]]; then bash bench/lint.sh; fi

# The server: list requests and /readyz under load, memory while it watches 100 services.
if [[ $PARTS == *" server "* ]]; then bash bench/server.sh; fi

# Docker Swarm, on a two-node swarm the bench makes and removes (bench/swarm.sh):
# rolling 10 replicas vs docker stack deploy, the whole release rolled back vs docker service rollback.
if [[ $PARTS == *" swarm "* ]]; then bash bench/swarm.sh; fi

# The scan gate: its decision over 10,000 findings, beside trivy convert --exit-code.
if [[ $PARTS == *" scan "* ]]; then bash bench/scan.sh; fi

# The proxy: wrk through gantry proxy, nginx-light and direct, side by side.
if [[ $PARTS == *" proxy "* ]]; then bash bench/proxy.sh; fi

# Analysis: from a failing measurement to the previous release serving.
if [[ $PARTS == *" analysis "* ]]; then bash bench/analysis.sh; fi

# The health view: /health/{env} of 20 services from its cache, and without.
if [[ $PARTS == *" health "* ]]; then bash bench/health.sh; fi
