#!/usr/bin/env bash
# bench/proxy.sh: the gantry proxy against nginx and against no proxy at all,
# side by side in one run on loopback, in front of two upstreams: a container
# of the example app (FROM scratch, GET /version) with its port published on
# 127.0.0.1, as gantry publishes a routed service (through Docker's
# docker-proxy), and the same app as a plain process on loopback, which
# leaves the proxies' own cost nowhere to hide. nginx is Debian's
# nginx-light with one worker and keep-alive connections to the upstream; the
# load is Debian's wrk with 1 thread. gantry runs twice: as Go sets it up
# (GOMAXPROCS = the CPUs), and with GOMAXPROCS=1, one thread running Go
# code, the CPU allowance of nginx's one worker.
#
# Each target is measured two ways, after an uncounted 2 s warm-up, in
# rounds that alternate the order of the targets; the median of each
# figure is reported:
#   - throughput: 32 connections (saturation), requests/s, and the CPU time
#     the proxy process spent per request (user + system, from /proc; less
#     moved by the other work on the machine than requests/s are);
#   - latency: one connection, one request at a time, so that p50 minus the
#     direct p50 is the time the proxy adds to a request. At saturation a
#     request mostly waits behind the 31 others (p50 is about connections /
#     throughput, Little's law), so the p50 there restates throughput; it is
#     still printed, and judged, as the older runs did.
# Goals: gantry's throughput at least 0.8x nginx's, and gantry's p50 added
# latency no more than nginx's. Beside the verdicts on the medians, each
# gantry's p50 minus nginx's is printed round by round, with how many rounds
# it was at or below: what the verdicts are worth against the noise.
#
# Then a deploy under load: wrk (1 thread, 8 connections) through the proxy
# while `gantry deploy` replaces the routed service blue/green, beside wrk on
# the published port while `docker compose up -d` recreates the same service
# with the new image; the failed requests of each (goal: none for gantry).
# And the switch back: the time of the proxy's switch call through the admin
# socket, from asking to every new request on the other release (goal: under
# 50 ms).
#
# Environment: GANTRY (default bin/gantry), BENCH_PROXY_ROUNDS (3),
# BENCH_PROXY_SECONDS (10 per throughput run), BENCH_PROXY_LATENCY_SECONDS
# (5 per one-connection run), BENCH_PROXY_CONNECTIONS (32),
# BENCH_IMAGE (gantry-example/app:1.0.0), BENCH_PROXY_PORT (23080; nginx
# gets +1, the process upstream +2, compose +3, gantry with GOMAXPROCS=1
# +4), BENCH_PROXY_UPSTREAMS ("container process"), BENCH_PROXY_ONE_PROC
# (1; 0 leaves out gantry with GOMAXPROCS=1), BENCH_PROXY_DEPLOY (1; 0 skips
# the deploy under load), BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GANTRY="${GANTRY:-$PWD/bin/gantry}"
ROUNDS="${BENCH_PROXY_ROUNDS:-3}"
SECONDS_PER_RUN="${BENCH_PROXY_SECONDS:-10}"
LAT_SECONDS="${BENCH_PROXY_LATENCY_SECONDS:-5}"
ONE_PROC="${BENCH_PROXY_ONE_PROC:-1}"
CONNS="${BENCH_PROXY_CONNECTIONS:-32}"
IMAGE="${BENCH_IMAGE:-gantry-example/app:1.0.0}"
GPORT="${BENCH_PROXY_PORT:-23080}"
NPORT=$((GPORT + 1))
APORT=$((GPORT + 2))
CPORT=$((GPORT + 3))
G1PORT=$((GPORT + 4))
DEPLOY_PART="${BENCH_PROXY_DEPLOY:-1}"
NEW_IMAGE="${BENCH_NEW_IMAGE:-gantry-example/app:1.1.0}"
UPSTREAMS="${BENCH_PROXY_UPSTREAMS:-container process}"

# Debian's wrk and nginx-light; nginx's own service is not started.
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bench/proxy.sh: needs ${need[*]}; run as root, or: sudo apt-get install -y ${need[*]}" >&2
		exit 1
	fi
	echo "bench: installing ${need[*]} (Debian)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
	command -v invoke-rc.d >/dev/null 2>&1 && invoke-rc.d nginx stop >/dev/null 2>&1 || true
fi
[ -x "$GANTRY" ] || go build -o "$GANTRY" ./cmd/gantry
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	echo "bench: building the example images (examples/build.sh --all)"
	bash examples/build.sh --all >/dev/null
fi

work="$(mktemp -d)"
cid="" nginx_pid="" proxy_pid="" proxy1_pid="" app_pid="" dl_project="gbench-proxy-$$"
cleanup() {
	docker compose -p "$dl_project-compose" down -v >/dev/null 2>&1 || true
	ids="$(docker ps -aq --filter "label=io.gantry.project=$dl_project")"
	if [ -n "$ids" ]; then docker rm -f -v $ids >/dev/null 2>&1 || true; fi
	ids="$(docker network ls -q --filter "label=io.gantry.project=$dl_project")"
	if [ -n "$ids" ]; then docker network rm $ids >/dev/null 2>&1 || true; fi
	if [ -n "$app_pid" ]; then kill "$app_pid" 2>/dev/null || true; wait "$app_pid" 2>/dev/null || true; fi
	if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
	if [ -n "$proxy1_pid" ]; then kill "$proxy1_pid" 2>/dev/null || true; wait "$proxy1_pid" 2>/dev/null || true; fi
	if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
	if [ -n "$cid" ]; then docker rm -f -v "$cid" >/dev/null 2>&1 || true; fi
	[ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=1.0.0" -o "$work/app" ./examples/app

# write_nginx_conf UPSTREAM: nginx-light with one worker and kept-alive
# connections to the upstream (as many requests on one as gantry allows).
write_nginx_conf() {
	mkdir -p "$work/nginx"
	cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream app { server $1; keepalive 64; keepalive_requests 1000000; keepalive_timeout 5m; }
  server {
    listen 127.0.0.1:$NPORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
NGINX
}

# write_gantry_conf DIR PORT: one route for any host.
write_gantry_conf() {
	mkdir -p "$1"
	cat >"$1/gantry.yaml" <<YAML
project: proxybench
proxy:
  listen: 127.0.0.1:$2
environments:
  bench:
    routes:
      web: { port: 8080 }
YAML
}

# cpu_ticks PID: the user + system CPU time of a process, in clock ticks.
cpu_ticks() { [ -n "$1" ] && awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo ""; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# run TARGET URL CONNS SECONDS PID: one wrk run; appends "rps p50_ms p99_ms
# errors cpu_us_per_request" to $work/runs.TARGET.CONNS (cpu "-" without a
# PID to read).
run() {
	local a b
	a="$(cpu_ticks "$5")"
	wrk -t1 -c"$3" -d"$4s" --latency "$2" >"$work/wrk.out" 2>&1 || true
	b="$(cpu_ticks "$5")"
	awk -v out="$work/runs.$1.$3" -v a="$a" -v b="$b" -v tick="$TICK_US" '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		/^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec/ { rps = $2 } /requests in/ { n = $1 }
		/Non-2xx|Socket errors/ { err = err $0 }
		END {
			cpu = (a == "" || b == "" || n == 0) ? "-" : sprintf("%.1f", (b - a) * tick / n)
			printf "%s %s %s %s %s\n", rps, p50, p99, (err == "" ? "0" : "1"), cpu >> out
		}' "$work/wrk.out"
}

# median COLUMN FILE
median() { awk -v c="$1" '{ print $c }' "$2" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
errors() { awk '{ s += $4 } END { print s + 0 }' "$1"; }

# start_gantry DIR PORT UPSTREAM [ENV...]: a gantry proxy with one route to
# UPSTREAM; its pid in $started.
start_gantry() {
	local dir="$1" port="$2" up="$3"
	shift 3
	write_gantry_conf "$dir" "$port"
	env "$@" "$GANTRY" --file "$dir/gantry.yaml" proxy >"$dir/proxy.log" 2>&1 &
	started=$!
	for _ in $(seq 100); do [ -S "$dir/.gantry/proxy/admin.sock" ] && break; sleep 0.1; done
	"$GANTRY" --file "$dir/gantry.yaml" proxy switch bench web "$up" --release 1.0.0 >/dev/null
}

# bench_upstream NAME ADDR DIRECT_PID: nginx and gantry in front of the
# upstream at ADDR, and the targets measured in alternating rounds.
bench_upstream() {
	local name="$1" up="$2" direct_pid="$3" r t i port started nginx_worker
	for _ in $(seq 100); do curl -fs "http://$up/version" >/dev/null && break; sleep 0.1; done
	curl -fs "http://$up/version" >/dev/null || { echo "bench: the upstream at $up does not answer" >&2; exit 1; }
	rm -rf "$work/nginx" "$work/g" "$work/g1" "$work"/runs.*
	write_nginx_conf "$up"
	nginx -c "$work/nginx/nginx.conf" &
	nginx_pid=$!
	start_gantry "$work/g" "$GPORT" "$up"
	proxy_pid=$started
	local targets=(direct nginx gantry) ports=("${up##*:}" "$NPORT" "$GPORT")
	if [ "$ONE_PROC" = 1 ]; then
		start_gantry "$work/g1" "$G1PORT" "$up" GOMAXPROCS=1
		proxy1_pid=$started
		targets+=(gantry-1p)
		ports+=("$G1PORT")
	fi
	for port in "$NPORT" "$GPORT" ${proxy1_pid:+"$G1PORT"}; do
		curl -fs "http://127.0.0.1:$port/version" >/dev/null || { echo "bench: nothing answers through 127.0.0.1:$port" >&2; cat "$work/g/proxy.log" "$work/nginx/error.log" >&2; exit 1; }
	done
	nginx_worker="$(pgrep -P "$nginx_pid" | head -1)"
	pid_of() {
		case $1 in
		direct) echo "$direct_pid" ;; nginx) echo "$nginx_worker" ;; gantry) echo "$proxy_pid" ;; gantry-1p) echo "$proxy1_pid" ;;
		esac
	}
	url_of() { [ "$1" = direct ] && echo "http://$up/version" || echo "http://127.0.0.1:$2/version"; }

	local n=${#targets[@]}
	# A warm-up of each target, not counted: upstream connections opened,
	# caches and heaps grown.
	for ((i = 0; i < n; i++)); do
		wrk -t1 -c"$CONNS" -d2s "$(url_of "${targets[$i]}" "${ports[$i]}")" >/dev/null 2>&1 || true
	done
	echo
	echo "bench: $name upstream at $up; $ROUNDS rounds, the targets in a different order each round;"
	echo "  throughput: wrk -t1 -c$CONNS -d${SECONDS_PER_RUN}s (saturation); latency: wrk -t1 -c1 -d${LAT_SECONDS}s (one request at a time)"
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			t=$(((i + r) % n))
			[ $((r % 2)) = 0 ] && t=$(((n - 1 - i + r) % n))
			run "${targets[$t]}" "$(url_of "${targets[$t]}" "${ports[$t]}")" "$CONNS" "$SECONDS_PER_RUN" "$(pid_of "${targets[$t]}")"
			run "${targets[$t]}" "$(url_of "${targets[$t]}" "${ports[$t]}")" 1 "$LAT_SECONDS" "$(pid_of "${targets[$t]}")"
		done
		echo "bench: round $r of $ROUNDS done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	done

	printf '%-20s %11s %9s %9s %11s | %11s %9s %9s\n' "target ($name)" "-c$CONNS req/s" "p50 ms" "p99 ms" "cpu us/req" "-c1 req/s" "p50 ms" "p99 ms"
	for t in "${targets[@]}"; do
		local f="$work/runs.$t.$CONNS" f1="$work/runs.$t.1" cpu
		cpu="$(median 5 "$f")"
		[ "$cpu" = - ] || cpu="$(printf '%.1f' "$cpu")"
		printf '%-20s %11.0f %9.3f %9.3f %11s | %11.0f %9.3f %9.3f\n' "$t" "$(median 1 "$f")" "$(median 2 "$f")" "$(median 3 "$f")" "$cpu" \
			"$(median 1 "$f1")" "$(median 2 "$f1")" "$(median 3 "$f1")"
		[ "$(errors "$f")" = 0 ] && [ "$(errors "$f1")" = 0 ] || echo "  ($t: wrk reported errors or non-2xx answers in some runs)"
	done
	echo "(cpu us/req: CPU time of the proxy process, or of the app for direct, per request at -c$CONNS; gantry-1p: GOMAXPROCS=1)"
	for t in "${targets[@]:2}"; do
		awk -v t="$t" -v dr="$(median 1 "$work/runs.direct.$CONNS")" -v nr="$(median 1 "$work/runs.nginx.$CONNS")" -v gr="$(median 1 "$work/runs.$t.$CONNS")" \
			-v dp="$(median 2 "$work/runs.direct.$CONNS")" -v np="$(median 2 "$work/runs.nginx.$CONNS")" -v gp="$(median 2 "$work/runs.$t.$CONNS")" \
			-v dp1="$(median 2 "$work/runs.direct.1")" -v np1="$(median 2 "$work/runs.nginx.1")" -v gp1="$(median 2 "$work/runs.$t.1")" -v c="$CONNS" 'BEGIN {
			ratio = gr / nr
			na = np - dp; ga = gp - dp; na1 = np1 - dp1; ga1 = gp1 - dp1
			printf "\n%s: throughput %.2fx nginx at -c%d (goal >= 0.80: %s); nginx %.2fx direct, %s %.2fx direct\n", t, ratio, c, (ratio >= 0.8 ? "met" : "NOT met"), nr / dr, t, gr / dr
			printf "%s: p50 added latency, one connection: %.3f ms, nginx %.3f ms (goal <= nginx: %s)\n", t, ga1, na1, (ga1 <= na1 ? "met" : "NOT met")
			printf "%s: p50 added latency at -c%d (restates throughput): %.3f ms, nginx %.3f ms (goal <= nginx: %s)\n", t, c, ga, na, (ga <= na ? "met" : "NOT met")
		}'
		# Round by round (a round measures every target once, back to back):
		# how often the p50 was at or below nginx's shows whether a verdict
		# on the medians is more than the noise between rounds.
		paste -d' ' "$work/runs.$t.1" "$work/runs.nginx.1" "$work/runs.$t.$CONNS" "$work/runs.nginx.$CONNS" | awk -v t="$t" -v c="$CONNS" '
			{ n++; d1 = $2 - $7; d = $12 - $17; m1 += d1 <= 0; m += d <= 0; s1 = s1 sprintf(" %+.3f", d1); s = s sprintf(" %+.3f", d) }
			END { printf "%s: p50 minus nginx'"'"'s, round by round: one connection%s ms (at or below in %d of %d rounds); -c%d%s ms (%d of %d)\n", t, s1, m1, n, c, s, m, n }'
	done
	kill "$proxy_pid" "$nginx_pid" ${proxy1_pid:+"$proxy1_pid"} 2>/dev/null || true
	wait "$proxy_pid" "$nginx_pid" ${proxy1_pid:+"$proxy1_pid"} 2>/dev/null || true
	proxy_pid="" nginx_pid="" proxy1_pid=""
}

for u in $UPSTREAMS; do
	case $u in
	container)
		cid="$(docker run -d --label io.gantry.test=1 --label io.gantry.bench=proxy -p 127.0.0.1::8080 "$IMAGE")"
		bench_upstream container "$(docker port "$cid" 8080/tcp | grep -m1 '^127\.0\.0\.1:')" ""
		;;
	process)
		PORT=$APORT "$work/app" serve 2>"$work/app.log" &
		app_pid=$!
		bench_upstream process "127.0.0.1:$APORT" "$app_pid"
		;;
	*) echo "bench: unknown upstream $u in BENCH_PROXY_UPSTREAMS; use container and/or process" >&2; exit 2 ;;
	esac
done

# wrk_failed FILE: "failed total" from a wrk report: socket errors and
# non-2xx answers, of all requests.
wrk_failed() {
	awk '/requests in/ { total = $1 } /Socket errors/ { gsub(",", ""); f += $4 + $6 + $8 + $10 }
		/Non-2xx/ { f += $NF } END { printf "%d %d\n", f, total }' "$1"
}

deploy_under_load() {
	local dir="$work/deploy" sock r
	mkdir -p "$dir/compose"
	[ "$DEPLOY_PART" = 1 ] || return 0
	docker image inspect "$NEW_IMAGE" >/dev/null 2>&1 || bash examples/build.sh --all >/dev/null
	cat >"$dir/gantry.yaml" <<YAML
project: $dl_project
compose: compose.yaml
proxy:
  listen: 127.0.0.1:$GPORT
  drain_timeout: 10s
environments:
  bench:
    health: { window: 2m, min_healthy: 2s }
    routes:
      web: { port: 8080 }
YAML
	cat >"$dir/compose.yaml" <<YAML
services:
  web:
    image: \${BENCH_WEB_IMAGE:-$IMAGE}
    labels: { io.gantry.test: "1" }
    healthcheck: { test: ["CMD", "/app", "check"], interval: 1s, timeout: 2s, retries: 3 }
YAML
	sed 's|^services:|name: '"$dl_project"'-compose\nservices:|; s|^    healthcheck|    ports: ["127.0.0.1:'"$CPORT"':8080"]\n    healthcheck|' "$dir/compose.yaml" >"$dir/compose/compose.yaml"
	g() { "$GANTRY" --file "$dir/gantry.yaml" "$@"; }
	"$GANTRY" --file "$dir/gantry.yaml" proxy >"$dir/proxy.log" 2>&1 &
	proxy_pid=$!
	sock="$dir/.gantry/proxy/admin.sock"
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	g deploy bench --release 1.0.0 >/dev/null 2>&1 || { echo "bench: the first gantry deploy failed" >&2; cat "$dir/proxy.log" >&2; exit 1; }

	echo
	echo "bench: deploy under load (wrk -t1 -c8) of $NEW_IMAGE over $IMAGE"
	wrk -t1 -c8 -d60s "http://127.0.0.1:$GPORT/version" >"$dir/wrk.gantry" 2>&1 &
	local wrk_pid=$! t0 t1
	sleep 2
	t0=$(date +%s.%N)
	g deploy bench --release 1.1.0 --image "web=$NEW_IMAGE" >"$dir/deploy.log" 2>&1 || { echo "bench: gantry deploy failed:" >&2; cat "$dir/deploy.log" >&2; }
	t1=$(date +%s.%N)
	sleep 2
	kill -INT "$wrk_pid" 2>/dev/null || true
	wait "$wrk_pid" 2>/dev/null || true

	(cd "$dir/compose" && docker compose up -d --wait >/dev/null 2>&1) || { echo "bench: docker compose up failed" >&2; exit 1; }
	wrk -t1 -c8 -d60s "http://127.0.0.1:$CPORT/version" >"$dir/wrk.compose" 2>&1 &
	wrk_pid=$!
	sleep 2
	local c0 c1
	c0=$(date +%s.%N)
	(cd "$dir/compose" && BENCH_WEB_IMAGE="$NEW_IMAGE" docker compose up -d >/dev/null 2>&1)
	for _ in $(seq 300); do curl -fs "http://127.0.0.1:$CPORT/version" >/dev/null && break; sleep 0.1; done
	c1=$(date +%s.%N)
	sleep 2
	kill -INT "$wrk_pid" 2>/dev/null || true
	wait "$wrk_pid" 2>/dev/null || true

	read -r gf gt < <(wrk_failed "$dir/wrk.gantry")
	read -r cf ct < <(wrk_failed "$dir/wrk.compose")
	printf '%-34s %10s %10s %10s\n' "deploy under load" "requests" "failed" "seconds"
	printf '%-34s %10d %10d %10.1f\n' "gantry deploy (blue/green)" "$gt" "$gf" "$(echo "$t1 - $t0" | bc)"
	printf '%-34s %10d %10d %10.1f\n' "docker compose up -d (recreate)" "$ct" "$cf" "$(echo "$c1 - $c0" | bc)"
	[ "$gf" = 0 ] && echo "gantry: zero failed requests (goal met)" || echo "gantry: $gf failed requests (goal NOT met)"

	# The switch back: 20 switches between the two releases' upstreams.
	local cur prev times=()
	cur="$(g proxy status --output json | awk -F'"' '/"upstream"/ { getline; print $4; exit }')"
	prev="$(g proxy status --output json | awk -F'"' '/"previous"/ { getline; print $4; exit }')"
	for i in $(seq 20); do
		[ $((i % 2)) = 1 ] && to="$prev" || to="$cur"
		times+=("$(curl -s -o /dev/null -w '%{time_total}' --unix-socket "$sock" -X POST \
			-d '{"env":"bench","service":"web","to":{"addr":"'"$to"'"},"reason":"rollback"}' http://gantry-proxy/v1/switch)")
	done
	printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 * 1000 } END {
		printf "switch back through the admin socket: p50 %.1f ms, max %.1f ms (goal under 50 ms: %s)\n", v[int((NR + 1) / 2)], v[NR], (v[NR] < 50 ? "met" : "NOT met") }'
	kill "$proxy_pid" 2>/dev/null || true
	wait "$proxy_pid" 2>/dev/null || true
	proxy_pid=""
}
deploy_under_load
