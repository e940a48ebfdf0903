#!/usr/bin/env bash
# bench/push.sh: pushing a ~200 MB multi-layer image with gantry push, crane
# push and docker push, side by side in one run, into the same registry
# (gantry's embedded one, on loopback); a second push of each when every
# blob is there; and copying the release to another repository of the same
# registry, through bench/cmd/countproxy, which counts the bytes each tool
# sends.
# Goals: push at least as fast as crane and 2x faster than docker push; the
# second push near-instant; a copy sends under 0.1% of the image's bytes.
#
# Each round starts a fresh registry on a new port, so that no tool can
# mount or skip a blob thanks to an earlier round: docker's and gantry's
# memory of which repository holds which blob is per registry host.
# Within a round the tools take turns going first.
#
# The image is built FROM scratch out of random (incompressible) data, so no
# public registry is involved. Inputs: gantry pushes its image store (what
# gantry build saved from the engine: gzipped layers, digests known); crane
# pushes a copy of that same OCI layout (the same blobs and manifest, so both
# send exactly the same bytes and neither hashes or compresses anything);
# docker pushes the image from its engine (it compresses the layers as it
# pushes: that is what docker push costs).
#
# The registry keeps its content on tmpfs (/dev/shm) when there is room: on
# disk, writeback of the 200 MB each push writes stalls a push now and then
# by up to seconds, which says nothing about the tools.
#
# Then gantry against crane alone, in pairs: each push into a registry of its
# own (fresh port and content, so nothing is mounted or skipped), the two
# tools taking turns going first; the goal is judged on the median of the
# pairs' ratios, which a burst of load from other work on the machine moves
# far less than a best or a mean.
#
# Environment: GANTRY (default bin/gantry), BENCH_ROUNDS (default 3),
# BENCH_PUSH_PAIRS (gantry/crane pairs, default 15),
# BENCH_PUSH_MB (default 200), BENCH_PUSH_TIMEOUT (seconds for the whole
# bench, default 1800), BENCH_REGISTRY_DIR (where the registry keeps its
# content; default /dev/shm), BENCH_KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
export DOCKER_BUILDKIT=0 # the classic builder: Debian's docker has no buildx
GANTRY="${GANTRY:-$PWD/bin/gantry}"
ROUNDS="${BENCH_ROUNDS:-3}"
PAIRS="${BENCH_PUSH_PAIRS:-15}"
MB="${BENCH_PUSH_MB:-200}"
CRANE_VERSION=v0.22.1
LABEL=io.gantry.bench=push
IMAGE=gantry-bench-push/app:1.0.0
STEP_TIMEOUT=300 # seconds, for any one push, copy or build
DEADLINE=$((SECONDS + ${BENCH_PUSH_TIMEOUT:-1800}))

say() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
((ROUNDS >= 1 && ROUNDS <= 20)) || die "BENCH_ROUNDS=$ROUNDS: give 1 to 20"
((MB >= 8 && MB <= 4096)) || die "BENCH_PUSH_MB=$MB: give 8 to 4096"
((PAIRS >= 1 && PAIRS <= 100)) || die "BENCH_PUSH_PAIRS=$PAIRS: give 1 to 100"
[ -x "$GANTRY" ] || die "no gantry binary at $GANTRY: run make build"
timeout --foreground 30 docker info >/dev/null 2>&1 || die "no Docker engine answers: run make deps"

work="$(mktemp -d /tmp/gantry-bench-push.XXXXXX)"
regdir="${BENCH_REGISTRY_DIR:-/dev/shm}"
# Each round's registry holds up to 3 copies of the image (two compressions).
if [ -d "$regdir" ] && [ -w "$regdir" ] && (($(df -Pk "$regdir" | awk 'NR == 2 { print $4 }') > MB * 1024 * 4)); then
	regdir="$(mktemp -d "$regdir/gantry-bench-push.XXXXXX")"
else
	regdir="$work"
fi
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	local ids
	ids="$(timeout 60 docker images -q --filter "label=$LABEL" | sort -u)" || true
	if [ -n "$ids" ]; then
		# shellcheck disable=SC2086
		timeout 120 docker rmi -f $ids >/dev/null 2>&1 || true
	fi
	if [ -n "${BENCH_KEEP:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
	[ "$regdir" = "$work" ] || rm -rf "$regdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say "push: work dir $work, registry content in $regdir"
load_note() { # the load average against the CPUs: pushes here are CPU-bound
	awk -v n="$(nproc)" '{ if ($1 > n) printf "bench: load average %s on %d CPUs: other work competes for the CPU and the timings are noisy\n", $1, n }' /proc/loadavg
}
load_note

# --- tools -----------------------------------------------------------------
GOBIN="${GOBIN:-$(go env GOBIN)}"
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
CRANE="$GOBIN/crane"
if [ "$(timeout --foreground 10 "$CRANE" version 2>/dev/null)" != "$CRANE_VERSION" ]; then
	say "installing crane $CRANE_VERSION into $GOBIN (go install github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION)"
	GOBIN="$GOBIN" timeout --foreground 600 go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" ||
		die "could not install crane $CRANE_VERSION with go install; check that the Go module proxy answers (go env GOPROXY)"
	[ "$(timeout --foreground 10 "$CRANE" version 2>/dev/null)" = "$CRANE_VERSION" ] || die "$CRANE is not crane $CRANE_VERSION after go install"
fi
timeout --foreground 300 go build -o "$work/bin/countproxy" ./bench/cmd/countproxy
timeout --foreground 300 go build -o "$work/bin/gantrycopy" ./bench/cmd/gantrycopy

# --- the image ---------------------------------------------------------------
# Eight layers of random data, of different sizes, in proportion 1:3:6:10:14:18:22:26
# of BENCH_PUSH_MB (2, 6, 12, 20, 28, 36, 44, 52 MB at 200).
proj="$work/project"
mkdir -p "$proj/data"
parts=(1 3 6 10 14 18 22 26)
{
	echo "FROM scratch"
	echo "LABEL $LABEL"
	i=0
	for p in "${parts[@]}"; do
		kb=$((MB * 1024 * p / 100))
		head -c "$((kb * 1024))" /dev/urandom >"$proj/data/layer$i.bin"
		echo "COPY data/layer$i.bin /data/layer$i.bin"
		i=$((i + 1))
	done
} >"$proj/Dockerfile"
say "building $IMAGE: ${#parts[@]} layers of random data, $(du -sm "$proj/data" | cut -f1) MB, FROM scratch"
timeout --foreground "$STEP_TIMEOUT" docker build -q -t "$IMAGE" "$proj" >"$work/docker-build.log" 2>&1 ||
	die "docker build failed: $(cat "$work/docker-build.log")"

cat >"$proj/compose.yaml" <<EOF
services:
  app:
    image: bench/app
EOF
gantry_yaml() { # registry host:port, repository
	cat >"$proj/gantry.yaml" <<EOF
project: benchpush
compose: compose.yaml
registry:
  url: $1
services:
  app:
    image: $2
    build:
      context: .
      dockerfile: Dockerfile
environments:
  bench: {}
EOF
}
gantry_yaml 127.0.0.1:1 bench/app
say "gantry build (engine method, into gantry's image store; not timed)"
(cd "$proj" && timeout --foreground "$STEP_TIMEOUT" "$GANTRY" build app --output json) >"$work/build.json" 2>"$work/build.log" ||
	die "gantry build failed: $(tail -20 "$work/build.log")"
method="$(jq -r '.[0].method' "$work/build.json")"
[ "$method" = engine ] || die "gantry build used the $method method, not engine: $(cat "$work/build.json")"
digest="$(jq -r '.[0].digest' "$work/build.json")"
# crane's input: the same OCI layout, copied (gantry's store holds this one image).
cp -r "$proj/.gantry/images" "$work/crane-layout"
rm -f "$work/crane-layout/pushed.json"
[ "$(jq '.manifests | length' "$work/crane-layout/index.json")" = 1 ] || die "gantry's store holds more than one image"
say "gantry built $digest; crane pushes a copy of gantry's store (OCI layout, same blobs)"

# --- helpers ---------------------------------------------------------------
now_ns() { date +%s%N; }
free_port() { # a port nothing listens on, below the ephemeral range (where outgoing connections take theirs)
	local p n
	for ((n = 0; n < 100; n++)); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "found no free port in 100 tries"
}
wait_http() { # url: wait up to 10 s for an answer
	local n
	for ((n = 0; n < 100; n++)); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing answers at $1 after 10 s"
}
# start_registry DIR: a fresh registry on a new port with its content in DIR;
# sets reg and appends its pid to pids.
# Another program may take the port between free_port and the registry's
# bind: then it exits, and another port is tried.
start_registry() {
	local try n pid log="$work/${1##*/}.log"
	mkdir -p "$1"
	for ((try = 0; try < 5; try++)); do
		reg="127.0.0.1:$(free_port)"
		"$GANTRY" registry serve --addr "$reg" --root "$1" --state-dir "$1" >"$log" 2>&1 &
		pid=$!
		for ((n = 0; n < 300; n++)); do
			# Its own line first: something else may answer on the port.
			if grep -qs "listening on $reg" "$log" && curl -fsS -o /dev/null --max-time 1 "http://$reg/v2/" 2>/dev/null; then
				pids+=("$pid")
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	die "the registry did not start (5 tries): $(tail -5 "$log")"
}
# timed NAME FUNC: runs FUNC (bounded: timeout runs it in a bash of its own), records its time in ms as T[NAME],
# fails the bench when CMD fails.
declare -A T BEST BYTES ALL
# --foreground: a Ctrl-C reaches the tool too, and the bench stops at once.
timed() {
	local name=$1 t0 t1 left=$((DEADLINE - SECONDS))
	shift
	((left > 0)) || die "out of time (BENCH_PUSH_TIMEOUT) before $name"
	t0=$(now_ns)
	if ! timeout --foreground "$((left < STEP_TIMEOUT ? left : STEP_TIMEOUT))" bash -c "$*" >"$work/$name.log" 2>"$work/$name.err"; then
		cat "$work/$name.log" "$work/$name.err" >&2
		die "$name failed: $*"
	fi
	t1=$(now_ns)
	T[$name]=$(((t1 - t0) / 1000000))
	if [ -z "${BEST[$name]:-}" ] || ((T[$name] < BEST[$name])); then BEST[$name]=${T[$name]}; fi
	ALL[$name]+="${T[$name]} "
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
counts() { curl -fsS --max-time 10 "http://$proxy/-/counts"; }
reset_counts() { curl -fsS --max-time 10 -X POST "http://$proxy/-/reset"; }

push_gantry() { (cd "$proj" && "$GANTRY" push app --tag 1.0.0 --output json); }
push_crane() { "$CRANE" push "$work/crane-layout" "$reg/bench/crane-r$round:1.0.0"; }
push_docker() { docker push -q "$reg/bench/docker-r$round:1.0.0"; }
copy_gantry() { "$work/bin/gantrycopy" -src "$proxy/bench/gantry-r$round@$digest" -dst "$proxy/bench/gantry-copy-r$round" -tag 1.0.0; }
copy_crane() { "$CRANE" copy "$proxy/bench/gantry-r$round@$digest" "$proxy/bench/crane-copy-r$round:1.0.0"; }
copy_docker() {
	docker pull -q "$proxy/bench/gantry-r$round@$digest" &&
		docker tag "$proxy/bench/gantry-r$round@$digest" "$proxy/bench/docker-copy-r$round:1.0.0" &&
		docker push -q "$proxy/bench/docker-copy-r$round:1.0.0"
}
export -f push_gantry push_crane push_docker copy_gantry copy_crane copy_docker
export GANTRY CRANE work proj digest

tools=(gantry crane docker)
image_bytes=0
for ((round = 1; round <= ROUNDS; round++)); do
	export reg round
	start_registry "$regdir/registry-r$round"
	rm -f "$work/proxy.addr"
	"$work/bin/countproxy" -listen 127.0.0.1:0 -target "$reg" -addr-file "$work/proxy.addr" >"$work/proxy-r$round.log" 2>&1 &
	pids+=($!)
	for ((n = 0; n < 100; n++)); do [ -s "$work/proxy.addr" ] && break; sleep 0.1; done
	export proxy
	proxy="$(cat "$work/proxy.addr")" || die "countproxy did not start: $(cat "$work/proxy-r$round.log")"
	wait_http "http://$proxy/v2/"

	gantry_yaml "$reg" "bench/gantry-r$round"
	timeout --foreground 60 docker tag "$IMAGE" "$reg/bench/docker-r$round:1.0.0"
	# Who goes first changes every round.
	order=("${tools[@]:$(((round - 1) % 3))}" "${tools[@]:0:$(((round - 1) % 3))}")
	for t in "${order[@]}"; do timed "push1:$t" "push_$t"; done
	for t in "${order[@]}"; do timed "push2:$t" "push_$t"; done
	# The copy goes through the proxy; every tool copies gantry's push.
	for t in "${order[@]}"; do
		reset_counts
		timed "copy:$t" "copy_$t"
		counts >"$work/counts-$t-r$round.json"
		b=$(jq '.total.body_bytes' "$work/counts-$t-r$round.json")
		if [ -z "${BYTES[$t]:-}" ] || ((b > BYTES[$t])); then BYTES[$t]=$b; fi
	done
	# gantry sent every blob the first time, none the second.
	jq -e --arg d "$digest" '.[0].digest == $d and .[0].blobs_uploaded > 0' "$work/push1:gantry.log" >/dev/null ||
		die "gantry's first push did not upload $digest: $(cat "$work/push1:gantry.log")"
	jq -e '.[0].blobs_uploaded == 0 and .[0].bytes_uploaded == 0' "$work/push2:gantry.log" >/dev/null ||
		die "gantry's second push uploaded blobs: $(cat "$work/push2:gantry.log")"
	if ((round == 1)); then
		# The image's bytes as the registry holds them: config and layers.
		image_bytes=$(curl -fsS --max-time 10 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
			"http://$reg/v2/bench/gantry-r$round/manifests/$digest" | jq '.config.size + ([.layers[].size] | add)')
		want=$("$CRANE" digest "$reg/bench/crane-r$round:1.0.0")
		[ "$want" = "$digest" ] || die "crane pushed $want, not gantry's $digest: the inputs differ"
	fi
	printf 'bench: round %d/%d: push %s, again %s, copy %s (ms; bytes sent %s)\n' "$round" "$ROUNDS" \
		"$(for t in "${tools[@]}"; do printf '%s=%s ' "$t" "${T[push1:$t]}"; done)" \
		"$(for t in "${tools[@]}"; do printf '%s=%s ' "$t" "${T[push2:$t]}"; done)" \
		"$(for t in "${tools[@]}"; do printf '%s=%s ' "$t" "${T[copy:$t]}"; done)" \
		"$(for t in "${tools[@]}"; do printf '%s=%s ' "$t" "$(jq '.total.body_bytes' "$work/counts-$t-r$round.json")"; done)"

	kill "${pids[@]}" 2>/dev/null || true
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
	rm -rf "$regdir/registry-r$round"
done

# --- gantry against crane, in pairs -----------------------------------------
stop_registries() {
	local p
	kill "${pids[@]}" 2>/dev/null || true
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
# pair_push TOOL DIR: one push of TOOL into a registry of its own; sets
# pair_ms. Timed with bash's clock (no fork around the push).
pair_push() {
	local t0 t1 left=$((DEADLINE - SECONDS))
	((left > 0)) || die "out of time (BENCH_PUSH_TIMEOUT) in the gantry/crane pairs"
	start_registry "$2"
	if [ "$1" = gantry ]; then
		gantry_yaml "$reg" bench/pair
		t0=$EPOCHREALTIME
		(cd "$proj" && timeout --foreground "$STEP_TIMEOUT" "$GANTRY" push app --tag 1.0.0 >"$work/${2##*/}.push.log" 2>&1) ||
			die "gantry push failed: $(tail -5 "$work/${2##*/}.push.log")"
	else
		t0=$EPOCHREALTIME
		timeout --foreground "$STEP_TIMEOUT" "$CRANE" push "$work/crane-layout" "$reg/bench/pair:1.0.0" >"$work/${2##*/}.push.log" 2>&1 ||
			die "crane push failed: $(tail -5 "$work/${2##*/}.push.log")"
	fi
	t1=$EPOCHREALTIME
	stop_registries
	rm -rf "$2"
	pair_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
}
say "gantry against crane: $PAIRS pairs, each push into a fresh registry, turns alternating"
pair_g=() pair_c=() pair_r=()
for ((i = 1; i <= PAIRS; i++)); do
	if ((i % 2)); then
		pair_push gantry "$regdir/pair-$i-g"
		g=$pair_ms
		pair_push crane "$regdir/pair-$i-c"
		c=$pair_ms
	else
		pair_push crane "$regdir/pair-$i-c"
		c=$pair_ms
		pair_push gantry "$regdir/pair-$i-g"
		g=$pair_ms
	fi
	pair_g+=("$g") pair_c+=("$c")
	pair_r+=("$(awk -v g="$g" -v c="$c" 'BEGIN { if (c == 0) c = 1; printf "%.3f", g / c }')")
done
say "pairs (gantry/crane ms): $(for ((i = 0; i < PAIRS; i++)); do printf '%s/%s ' "${pair_g[$i]}" "${pair_c[$i]}"; done)"
fmedian() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- the table ---------------------------------------------------------------
load_note
sec() { awk -v ms="$1" 'BEGIN { printf "%.2f s", ms / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 1; printf "%.2f", a / b }'; }
verdict() { awk -v x="$1" -v max="$2" 'BEGIN { exit !(x <= max) }' && echo met || echo "NOT met"; }
human() { awk -v n="$1" 'BEGIN { if (n >= 1048576) printf "%.1f MB", n / 1048576; else if (n >= 1024) printf "%.1f kB", n / 1024; else printf "%d B", n }'; }

printf '\n%-40s %12s %12s %12s\n' "push, $(human "$image_bytes") in ${#parts[@]} layers; best of $ROUNDS" gantry crane docker
printf '  %-38s %12s %12s %12s\n' "first push" "$(sec "${BEST[push1:gantry]}")" "$(sec "${BEST[push1:crane]}")" "$(sec "${BEST[push1:docker]}")"
printf '  %-38s %12s %12s %12s\n' "first push, median" "$(sec "$(median "${ALL[push1:gantry]}")")" "$(sec "$(median "${ALL[push1:crane]}")")" "$(sec "$(median "${ALL[push1:docker]}")")"
printf '  %-38s %12s %12s %12s\n' "first push, median of $PAIRS pairs" "$(sec "$(fmedian "${pair_g[@]}")")" "$(sec "$(fmedian "${pair_c[@]}")")" ""
printf '  %-38s %12s %12s %12s\n' "second push (every blob there)" "$(sec "${BEST[push2:gantry]}")" "$(sec "${BEST[push2:crane]}")" "$(sec "${BEST[push2:docker]}")"
printf '  %-38s %12s %12s %12s\n' "copy to another repository" "$(sec "${BEST[copy:gantry]}")" "$(sec "${BEST[copy:crane]}")" "$(sec "${BEST[copy:docker]}")"
printf '  %-38s %12s %12s %12s\n' "copy: bytes sent (most of any round)" "$(human "${BYTES[gantry]}")" "$(human "${BYTES[crane]}")" "$(human "${BYTES[docker]}")"
printf '  %s\n' "(bytes sent: request bodies, counted by countproxy. docker's copy is pull + tag + push;" \
	" the engine has the image already, so the pull fetches the manifest only and the push" \
	" compresses and uploads every layer again: it never learned that the registry has them)"

r_crane=$(printf '%.2f' "$(fmedian "${pair_r[@]}")")
r_lo=$(printf '%s\n' "${pair_r[@]}" | sort -g | head -1)
r_hi=$(printf '%s\n' "${pair_r[@]}" | sort -g | tail -1)
r_docker=$(ratio "${BEST[push1:gantry]}" "${BEST[push1:docker]}")
second=$(awk -v ms="${BEST[push2:gantry]}" 'BEGIN { printf "%.2f", ms / 1000 }')
pct=$(awk -v b="${BYTES[gantry]}" -v i="$image_bytes" 'BEGIN { if (i == 0) i = 1; printf "%.4f", 100 * b / i }')
printf '\ngoals\n'
printf '  %-38s %12s  (goal <= 1.0: %s; median of %d pairs, %s to %s)\n' "push: gantry / crane" "$r_crane" "$(verdict "$r_crane" 1.0)" "$PAIRS" "$r_lo" "$r_hi"
printf '  %-38s %12s  (goal <= 0.5: %s)\n' "push: gantry / docker" "$r_docker" "$(verdict "$r_docker" 0.5)"
printf '  %-38s %10s s  (goal near-instant, <= 1 s: %s)\n' "second push: gantry" "$second" "$(verdict "$second" 1.0)"
printf '  %-38s %11s%%  (goal < 0.1%% of the image: %s)\n' "copy: gantry's bytes sent" "$pct" "$(awk -v p="$pct" 'BEGIN { exit !(p < 0.1) }' && echo met || echo "NOT met")"
