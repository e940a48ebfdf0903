#!/usr/bin/env bash
# bench/server.sh: gantry server under a bounded load, with a store of 10,000
# deployments and 1,000,000 audit events and an environment of 100 services:
# p50/p99 of status, history and audit list requests (5,000 requests at 50
# concurrent each), /readyz, and the server's resident memory while it watches
# the 100 services. Side by side, the same load on the Docker Engine API's
# container list (what a hand-written status script or `docker ps` asks), the
# peer a user would otherwise query.
# Goals: list requests p99 < 50 ms, /readyz p99 < 2 ms, memory < 100 MiB.
#
# Environment: GANTRY (default bin/gantry), BENCH_SERVICES (100),
# BENCH_DEPLOYMENTS (10000), BENCH_AUDIT_EVENTS (1000000), BENCH_REQUESTS
# (5000), BENCH_CONCURRENCY (50), BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GANTRY="${GANTRY:-$PWD/bin/gantry}"
SERVICES="${BENCH_SERVICES:-100}"
DEPLOYS="${BENCH_DEPLOYMENTS:-10000}"
EVENTS="${BENCH_AUDIT_EVENTS:-1000000}"
N="${BENCH_REQUESTS:-5000}"
C="${BENCH_CONCURRENCY:-50}"
IMAGE="${BENCH_IMAGE:-gantry-example/app:1.0.0}"

mkdir -p bin
go build -o bin/serverbench ./bench/cmd/serverbench
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "bench: building the example images (examples/build.sh --all)"
	bash examples/build.sh --all >/dev/null
fi

work="$(mktemp -d)"
project="gbench-srv-$$"
server_pid=""
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
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
		printf '  svc%03d:\n    image: %s\n    read_only: true\n    healthcheck:\n      test: ["CMD", "/app", "check"]\n      interval: 30s\n      timeout: 2s\n      retries: 3\n      start_period: 1s\n      start_interval: 200ms\n' "$i" "$IMAGE"
	done
} >"$work/compose.yaml"
cat >"$work/gantry.yaml" <<YAML
project: $project
compose: compose.yaml
environments:
  staging:
    health: { window: 3m, min_healthy: 1s }
YAML
g() { "$GANTRY" --file "$work/gantry.yaml" "$@"; }

echo "bench: recording $DEPLOYS deployments and $EVENTS audit events"
bin/serverbench seed -state "$work/.gantry" -project "$project" -env staging -deployments "$DEPLOYS" -audit "$EVENTS"
echo "bench: deploying $SERVICES services"
t0=$(date +%s)
g deploy staging --release bench >/dev/null 2>"$work/deploy.log" || { cat "$work/deploy.log"; exit 1; }
echo "bench: deployed $SERVICES services in $(($(date +%s) - t0))s"
token="$(g token create --name bench --role admin 2>/dev/null)"

"$GANTRY" --file "$work/gantry.yaml" server --tls-self-signed --addr 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
url="" fp=""
for _ in $(seq 1 100); do
	url="$(grep -o 'https://[0-9.:]*' "$work/server.out" || true)"
	fp="$(grep -o '[0-9A-F:]\{95\}' "$work/server.out" || true)"
	if [ -n "$url" ] && [ -n "$fp" ] && curl -skf "$url/startupz" >/dev/null; then break; fi
	sleep 0.2
done
[ -n "$url" ] || { echo "bench: the server did not start:"; cat "$work/server.err"; exit 1; }
echo "bench: server at $url"

load() { bin/serverbench load -url "$url" -fingerprint "$fp" -token "$token" -n "$N" -c "$C" "$@"; }
results="$work/results.jsonl"
load /api/v1/envs/staging/status /api/v1/envs/staging/history /api/v1/audit >"$results"
# /readyz as probers call it (one at a time: Docker, Kubernetes, a load
# balancer), and under the list load's concurrency for reference.
bin/serverbench load -url "$url" -fingerprint "$fp" -n "$N" -c "${BENCH_READY_CONCURRENCY:-1}" /readyz >>"$results"
bin/serverbench load -url "$url" -fingerprint "$fp" -n "$N" -c "$C" /readyz | jq -c '.path="/readyz at \(.c)"' >>"$results"
filter="$(printf '{"label":["io.gantry.project=%s"]}' "$project" | jq -sRr @uri)"
bin/serverbench load -docker -n "$N" -c "$C" "/containers/json?all=1&filters=$filter" >>"$results"
rss_kib="$(awk '/VmRSS/ {print $2}' /proc/"$server_pid"/status)"
hwm_kib="$(awk '/VmHWM/ {print $2}' /proc/"$server_pid"/status)"

echo
# The load runs on the same CPUs as the server, dockerd and the 100
# containers: say when other work competes too.
awk -v n="$(nproc)" '{ if ($1 > n) printf "bench: load average %s on %d CPUs: other work competes for the CPU and the tail latencies are noisy\n", $1, n }' /proc/loadavg
echo "gantry server: $N requests per route at $C concurrent; $SERVICES services watched; $DEPLOYS deployments, $EVENTS audit events in the store"
printf '%-45s %4s %9s %9s %9s %7s %8s\n' route conc p50_ms p99_ms max_ms errors goal
jq -r '[.target, .path, .c, .p50_ms, .p99_ms, .max_ms, .errors] | @tsv' "$results" | while IFS=$'\t' read -r target path conc p50 p99 maxms errors; do
	goal="" ok=""
	case "$path" in
	/readyz) goal=2 ;;
	/api/v1/*) goal=50 ;;
	esac
	if [ -n "$goal" ]; then
		if awk -v a="$p99" -v b="$goal" 'BEGIN{exit !(a < b)}'; then ok="ok <${goal}"; else ok="MISSED <${goal}"; fi
	fi
	label="$path"
	[ "$target" = docker ] && label="docker: GET /containers/json (project filter)"
	printf '%-45s %4s %9s %9s %9s %7s %8s\n' "$label" "$conc" "$p50" "$p99" "$maxms" "$errors" "$ok"
done
# Each route's clients send one untimed request first, all at once: on the
# first route that opens the 50 connections (50 TLS handshakes).
echo "untimed first requests of $C clients at once (the first route's open the connections: $C TLS handshakes): $(jq -r 'select(.target=="gantry") | "\(.path) \(.warmup_ms) ms"' "$results" | paste -sd ';' | sed 's/;/; /g')"
status_p99="$(jq -r 'select(.path=="/api/v1/envs/staging/status") | .p99_ms' "$results")"
docker_p99="$(jq -r 'select(.target=="docker") | .p99_ms' "$results")"
echo "status p99 against the Docker API's container list p99: $(awk -v a="$status_p99" -v b="$docker_p99" 'BEGIN{printf "%.2fx", a/b}') (gantry answers with health, releases and the record; Docker with its raw list)"
mem_ok="ok <100"
if ((rss_kib >= 100 * 1024)); then mem_ok="MISSED <100"; fi
echo "server resident memory: $((rss_kib / 1024)) MiB now, $((hwm_kib / 1024)) MiB peak ($mem_ok MiB)"
