#!/usr/bin/env bash
# bench/health.sh: the health view /health/{env} of gantry server with 20
# services, each with an HTTP probe, under a bounded load: p50/p99 answered
# from the cache (health.cache: 30s, the notes' "30-second cache"), one
# prober at a time (a load balancer) and 50 at once (dashboards); side by
# side, the same view without a cache (a second server on the same record
# with health.cache: 0s: every request reads the 20 containers and probes the
# 20 services, what a hand-written aggregating health script does).
# Goals: cached p99 < 2 ms polled as a load balancer does (one at a time;
# 50 at once is shown for reference); any answer, even uncached, < 2 s (the
# notes' target).
#
# Environment: GANTRY (default bin/gantry), BENCH_SERVICES (20),
# BENCH_REQUESTS (5000), BENCH_CONCURRENCY (50), BENCH_DIRECT_REQUESTS (200),
# BENCH_IMAGE (gantry-example/app:1.0.0), BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GANTRY="${GANTRY:-$PWD/bin/gantry}"
SERVICES="${BENCH_SERVICES:-20}"
N="${BENCH_REQUESTS:-5000}"
C="${BENCH_CONCURRENCY:-50}"
ND="${BENCH_DIRECT_REQUESTS:-200}"
IMAGE="${BENCH_IMAGE:-gantry-example/app:1.0.0}"

mkdir -p bin
go build -o bin/serverbench ./bench/cmd/serverbench
[ -x "$GANTRY" ] || go build -o "$GANTRY" ./cmd/gantry
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "bench: building the example images (examples/build.sh --all)"
	bash examples/build.sh --all >/dev/null
fi

work="$(mktemp -d)"
project="gbench-health-$$"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	ids="$(docker ps -aq --filter "label=io.gantry.project=$project")"
	if [ -n "$ids" ]; then docker rm -f -v $ids >/dev/null 2>&1 || true; fi
	nets="$(docker network ls -q --filter "label=io.gantry.project=$project")"
	if [ -n "$nets" ]; then docker network rm $nets >/dev/null 2>&1 || true; fi
	[ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "bench: work dir $work, project $project"

{
	echo "services:"
	for ((i = 0; i < SERVICES; i++)); do
		printf '  svc%02d:\n    image: %s\n    ports: ["127.0.0.1::8080"]\n    read_only: true\n    healthcheck:\n      test: ["CMD", "/app", "check"]\n      interval: 30s\n      timeout: 2s\n      retries: 3\n      start_period: 1s\n      start_interval: 200ms\n' "$i" "$IMAGE"
	done
} >"$work/compose.yaml"
gantry_yaml() { # CACHE
	echo "project: $project"
	echo "compose: compose.yaml"
	echo "environments:"
	echo "  staging:"
	echo "    health:"
	echo "      window: 3m"
	echo "      min_healthy: 1s"
	echo "      cache: $1"
	echo "      probes:"
	for ((i = 0; i < SERVICES; i++)); do printf '        svc%02d: { http: { port: 8080, path: /healthz } }\n' "$i"; done
}
gantry_yaml 30s >"$work/gantry.yaml"
gantry_yaml 0s >"$work/gantry-nocache.yaml"
g() { "$GANTRY" --file "$work/gantry.yaml" "$@"; }

echo "bench: deploying $SERVICES services"
t0=$(date +%s)
g deploy staging --release bench >/dev/null 2>"$work/deploy.log" || { cat "$work/deploy.log"; exit 1; }
echo "bench: deployed in $(($(date +%s) - t0))s"
token="$(g token create --name bench --role viewer 2>/dev/null)"

# start FILE NAME: a gantry server on a free loopback port; sets url and fp.
start() {
	"$GANTRY" --file "$1" --state-dir "$work/.gantry" server --tls-self-signed --addr 127.0.0.1:0 >"$work/$2.out" 2>"$work/$2.err" &
	pids+=($!)
	url="" fp=""
	for _ in $(seq 1 100); do
		url="$(grep -o 'https://[0-9.:]*' "$work/$2.out" || true)"
		fp="$(grep -o '[0-9A-F:]\{95\}' "$work/$2.out" || true)"
		if [ -n "$url" ] && [ -n "$fp" ] && curl -skf "$url/startupz" >/dev/null; then return 0; fi
		sleep 0.2
	done
	echo "bench: the server did not start:"
	cat "$work/$2.err"
	exit 1
}
results="$work/results.jsonl"
start "$work/gantry.yaml" cached
curl -skf -H "Authorization: Bearer $token" "$url/health/staging" | jq -e '.status == "healthy"' >/dev/null ||
	{ echo "bench: the health view is not healthy:"; curl -sk -H "Authorization: Bearer $token" "$url/health/staging"; exit 1; }
load() { bin/serverbench load -url "$url" -fingerprint "$fp" -token "$token" "$@"; }
load -n "$N" -c 1 /health/staging | jq -c '.path="cached, 1 at a time"' >>"$results"
load -n "$N" -c "$C" /health/staging | jq -c '.path="cached, \(.c) at once"' >>"$results"
start "$work/gantry-nocache.yaml" direct
load -n "$ND" -c 1 /health/staging | jq -c '.path="no cache (20 inspects + 20 probes), 1 at a time"' >>"$results"

echo
awk -v n="$(nproc)" '{ if ($1 > n) printf "bench: load average %s on %d CPUs: other work competes for the CPU and the tail latencies are noisy\n", $1, n }' /proc/loadavg
echo "gantry server /health/staging: $SERVICES services, each with an HTTP probe; cache 30s"
printf '%-50s %5s %4s %9s %9s %9s %7s %10s\n' load n conc p50_ms p99_ms max_ms errors goal
jq -r '[.path, .n, .c, .p50_ms, .p99_ms, .max_ms, .errors] | @tsv' "$results" | while IFS=$'\t' read -r path n conc p50 p99 maxms errors; do
	# The goals: the cached view as a prober (a load balancer) polls it,
	# and the notes' 2 s for any answer; 50 at once is for reference (50
	# TLS clients on the server's own CPUs).
	goal="" ok="-"
	case "$path" in
	"cached, 1 at a time") goal=2 ;;
	no\ cache*) goal=2000 ;;
	esac
	if [ -n "$goal" ]; then
		if awk -v a="$p99" -v b="$goal" 'BEGIN{exit !(a < b)}'; then ok="ok <${goal}"; else ok="MISSED <${goal}"; fi
	fi
	printf '%-50s %5s %4s %9s %9s %9s %7s %10s\n' "$path" "$n" "$conc" "$p50" "$p99" "$maxms" "$errors" "$ok"
done
cached="$(jq -r 'select(.path=="cached, 1 at a time") | .p50_ms' "$results")"
direct="$(jq -r 'select(.path|startswith("no cache")) | .p50_ms' "$results")"
echo "p50 without the cache against with it: $(awk -v a="$direct" -v b="$cached" 'BEGIN{ if (b > 0) printf "%.0fx", a/b; else print "-" }') (and the services see one probe each per 30s, not one per request)"
