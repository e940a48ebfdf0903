#!/usr/bin/env bash
# bench/swarm.sh: gantry on a real two-node Docker Swarm (the local engine and
# a second dockerd in a network namespace, made and removed by the bench, as
# the tests do) against Swarm's own tools, side by side in one run:
#   - rolling 10 replicas to a new release: gantry deploy vs docker stack
#     deploy --detach=false (waits for convergence); goal within 1.1x;
#   - a failed service to the whole release rolled back: gantry's
#     rollback_seconds (every service) vs docker service rollback of the one
#     service; goal within 2x.
# Needs root (network namespace), iproute2 and nsenter (scripts/ensure-swarm.sh).
#
# Environment: GANTRY (default bin/gantry), BENCH_ROUNDS (3), BENCH_REPLICAS (10),
# BENCH_SKIP_IMAGES=1 to use the example images already built.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GANTRY="${GANTRY:-$PWD/bin/gantry}"

bash scripts/ensure-swarm.sh >/dev/null
if [ -z "${BENCH_SKIP_IMAGES:-}" ]; then
	echo "bench: building the example images (examples/build.sh --all)"
	bash examples/build.sh --all >/dev/null
fi
mkdir -p bin
go build -o bin/swarmbench ./bench/cmd/swarmbench
[ -x "$GANTRY" ] || go build -o "$GANTRY" ./cmd/gantry
bin/swarmbench -gantry "$GANTRY" -rounds "${BENCH_ROUNDS:-3}" -replicas "${BENCH_REPLICAS:-10}"
