#!/usr/bin/env bash
# gantry's end-to-end demo, the main job of `make demo`:
#
#   1. build the example images (FROM scratch, no public registry)
#   2. start gantry's own registry on 127.0.0.1:15000, with a user
#   3. in a scratch git repository of the hello app, commit a feat and run
#      `gantry release`: version 0.1.0, tags, a linux/amd64 + linux/arm64 image
#      pushed to the registry, a git tag; deploy it to staging by digest
#   4. commit a breaking change that makes the health check fail, release
#      0.2.0 and deploy it: gantry must exit non-zero and roll back by itself
#   5. try to move the version tag 0.1.0 to other bytes: refused by gantry
#      and, server side, by the registry
#   6. release a fix, 0.2.1, and kill -9 gantry in the middle of its deploy;
#      the next command recovers
#   7. deploy the multi-service examples/shop stack (a job, a secret, a volume)
#   8. start `gantry proxy` on 127.0.0.1:18085 in front of a routed web
#      service, deploy 1.0.0, then 1.1.0 blue/green under a bounded curl
#      load: zero failed requests, old then new version answering
#   9. give that route a canary block and deploy 1.2.0, a release answering
#      500 to every other request, as a canary under a bounded curl load: its
#      error ratio aborts it at the first step, all traffic back to 1.1.0,
#      zero requests failed by the switch; print the recorded reason
#  10. start `gantry server` (self-signed TLS) on 127.0.0.1:18443, make tokens
#      for alice (editor) and bob (admin); alice promotes 0.1.0 to a protected
#      production, it waits, bob approves, production runs it on :18081
#  11. move staging to a single-node swarm made for the step (skipped when
#      the engine is in a swarm already): deploy 0.1.0 there, status per
#      node, web routed through `gantry proxy` on 127.0.0.1:18087 to its
#      tasks, a release with a broken service rolled back whole under a
#      curl loop through the proxy (none may fail); leave it
#  12. show `gantry releases`, `gantry status` and `gantry history`
#  13. print a summary
#
# Run it from anywhere; GANTRY is the gantry binary (default ./bin/gantry,
# relative to the current directory). `examples/demo.sh --clean` only removes
# what a run left behind. Traffic goes to 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
project=hello
demo_dir="$root/bin/demo"
project_dir="$demo_dir/hello"
registry_addr=127.0.0.1:15000
registry_pid=
url="http://127.0.0.1:18080"

# The demo names its files itself; a caller's settings must not redirect it.
unset GANTRY_FILE GANTRY_STATE_DIR

GANTRY="${GANTRY:-./bin/gantry}"
case "$GANTRY" in
/*) ;;
*) GANTRY="$PWD/$GANTRY" ;;
esac

# ---------------------------------------------------------------- helpers

step=0
steps_total=13
declare -a summary=()

bold='' red='' off=''
if [ -t 1 ]; then bold=$'\033[1m' off=$'\033[0m'; fi
if [ -t 2 ]; then red=$'\033[1;31m'; fi

now_us() { echo "${EPOCHREALTIME/./}"; }
demo_start="$(now_us)"
step_start="$demo_start"

# secs FROM_US: the time since FROM_US, like 2.4s.
secs() {
	local d=$(($(now_us) - $1))
	printf '%d.%ds' $((d / 1000000)) $((d % 1000000 / 100000))
}

section() {
	step=$((step + 1))
	step_start="$(now_us)"
	printf '\n%s==> [%d/%d] %s%s\n' "$bold" "$step" "$steps_total" "$1" "$off"
}

# done_step RESULT: close the current section and remember it for the summary.
done_step() {
	local t
	t="$(secs "$step_start")"
	printf '    %s (%s)\n' "$1" "$t"
	summary+=("$(printf '%-56s %8s' "$1" "$t")")
}

fail() {
	printf '\n%sdemo: FAILED: %s%s\n' "$red" "$*" "${red:+$'\033[0m'}" >&2
	exit 1
}

# show CMD...: print a command the way a user would type it, then run it.
show() {
	local shown=("$@")
	[ "${shown[0]}" = "$GANTRY" ] && shown[0]=gantry
	printf '    $ %s\n' "${shown[*]}"
	"$@"
}

# serving: what $url/version answers, or "nothing" if nothing answers.
serving() {
	curl -fsS --max-time 2 "$url/version" 2>/dev/null || echo nothing
}

# cleanup: remove what an earlier run left, so every run starts the same.
cleanup() {
	local ids p
	for p in "$project" shop hello-bg; do
		ids="$(docker ps -aq --filter "label=io.gantry.project=$p")"
		[ -z "$ids" ] || docker rm -f -v $ids >/dev/null
		ids="$(docker network ls -q --filter "label=io.gantry.project=$p")"
		[ -z "$ids" ] || docker network rm $ids >/dev/null
		ids="$(docker volume ls -q --filter "label=io.gantry.project=$p")"
		[ -z "$ids" ] || docker volume rm -f $ids >/dev/null
		# Earlier builds of the project, left without a tag: each build on
		# the engine takes the tag of the one before (gantry labels a
		# release's images with the project's name as their title).
		ids="$(docker images -q --filter dangling=true --filter "label=org.opencontainers.image.title=$p")"
		[ -z "$ids" ] || docker rmi $ids >/dev/null 2>&1 || true
		# The secret files of the containers removed above (gantry's tmpfs
		# directories, docs/secrets.md).
		[ -z "$p" ] || rm -rf "/run/gantry/secrets/$p" "/dev/shm/gantry-$(id -u)/$p" \
			${XDG_RUNTIME_DIR:+"$XDG_RUNTIME_DIR/gantry/secrets/$p"} ${GANTRY_SECRETS_DIR:+"$GANTRY_SECRETS_DIR/$p"}
	done
	rm -rf "$demo_dir" "$here/shop/.gantry"
}

stop_registry() {
	if [ -n "$registry_pid" ]; then
		kill "$registry_pid" 2>/dev/null || true
		wait "$registry_pid" 2>/dev/null || true
		registry_pid=
	fi
}
trap stop_registry EXIT

# commit MESSAGE: commit everything in the scratch repository.
commit() {
	git -C "$project_dir" add -A
	git -C "$project_dir" -c user.name=Demo -c user.email=demo@example.com commit -q -m "$1"
	printf '    $ git commit -m "%s"\n' "$1"
}

# binaries: cross-compile the app for both platforms, stamped with the
# version gantry release is about to make.
binaries() {
	local v arch
	v="$(cd "$project_dir" && "$GANTRY" version)"
	# The app imports the Prometheus client: it is built inside gantry's
	# module (bin/demo/appsrc), with gantry's go.mod and go.sum, from the
	# scratch repository's main.go; no module download.
	mkdir -p "$demo_dir/appsrc"
	cp "$project_dir/main.go" "$demo_dir/appsrc/main.go"
	for arch in amd64 arm64; do
		(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildvcs=false \
			-ldflags "-s -w -X main.version=$v" -o "$project_dir/bin/app-linux-$arch" ./bin/demo/appsrc)
	done
	printf '    built bin/app-linux-amd64 and bin/app-linux-arm64 (version %s)\n' "$v"
}

# ------------------------------------------------------------- preflight

command -v docker >/dev/null || fail "docker is not installed; run \`make deps\`"
command -v git >/dev/null || fail "git is not installed; install it (apt-get install git)"
command -v go >/dev/null || fail "go is not installed; run \`make deps\`"
command -v curl >/dev/null || fail "curl is not installed; install it (apt-get install curl)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers; run \`make deps\` to start one"
command -v flock >/dev/null || fail "flock is not installed; install it (apt-get install util-linux)"

# One demo at a time on this engine, from any checkout: the cleanup below
# removes every hello, shop and hello-bg container, another run's too.
exec 8>>/tmp/gantry-demo.lock
flock -n 8 || fail "another gantry demo runs on this machine (it holds /tmp/gantry-demo.lock); wait for it to end, then run again"

if [ "${1:-}" = "--clean" ]; then
	cleanup
	echo "demo: removed the hello, shop and hello-bg containers, networks, volumes and state directories"
	exit 0
fi

[ -x "$GANTRY" ] || fail "no gantry binary at $GANTRY; run \`make build\` or set GANTRY=/path/to/gantry"

printf '%sgantry demo%s: releases, health-gated deploys with automatic rollback (%s)\n' "$bold" "$off" "$GANTRY"
cleanup
if curl -fsS --max-time 2 "http://$registry_addr/v2/" >/dev/null 2>&1 || [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$registry_addr/v2/")" != 000 ]; then
	fail "something already listens on $registry_addr; stop it and run again"
fi
if [ "$(serving)" != nothing ]; then
	fail "something not started by gantry already answers on $url; stop it and run again"
fi

# ------------------------------------------------------------------ steps

section "Build the example images (FROM scratch)"
"$here/build.sh" --all | sed 's/^/    /'
done_step "built gantry-example/app images"

section "Start gantry's registry on $registry_addr"
mkdir -p "$demo_dir"
export DEMO_REGISTRY_PASSWORD="demo-$RANDOM$RANDOM"
printf '%s' "$DEMO_REGISTRY_PASSWORD" | show "$GANTRY" registry user add demo --users "$demo_dir/registry-users" --password-stdin >/dev/null ||
	fail "gantry registry user add failed"
echo "    \$ gantry registry serve --addr $registry_addr --root $demo_dir/registry --users $demo_dir/registry-users &"
"$GANTRY" registry serve --addr "$registry_addr" --root "$demo_dir/registry" --users "$demo_dir/registry-users" \
	>"$demo_dir/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$registry_addr/v2/" || true)"
	[ "$code" = 401 ] && break
	kill -0 "$registry_pid" 2>/dev/null || fail "gantry registry serve exited: $(tail -n 5 "$demo_dir/registry.log")"
	sleep 0.1
done
[ "$code" = 401 ] || fail "the registry on $registry_addr does not answer (log: $demo_dir/registry.log)"
printf '    http://%s/v2/ without credentials -> %s (no anonymous access)\n' "$registry_addr" "$code"
done_step "registry up, anonymous access refused"

section "Release 0.1.0 from a feat commit and deploy it by digest"
mkdir -p "$project_dir"
cp "$root/examples/app/main.go" "$project_dir/main.go"
printf 'module example.com/hello\n\ngo 1.26\n' >"$project_dir/go.mod"
printf 'bin/\n.gantry/\n' >"$project_dir/.gitignore"
cp "$here/release/compose.yaml" "$here/release/gantry.yaml" "$project_dir/"
git init -q -b main "$project_dir"
commit "feat: hello, a web service that says its version"
binaries
cd "$project_dir"
show "$GANTRY" release || fail "gantry release of 0.1.0 failed"
show "$GANTRY" deploy staging --release 0.1.0 || fail "deploying 0.1.0 failed; it should succeed"
v1="$(serving)"
[ "$v1" = 0.1.0 ] || fail "after deploying 0.1.0, $url/version says \"$v1\", want 0.1.0"
digest_v1="$("$GANTRY" releases 0.1.0 --output json | sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p' | head -n1)"
[ -n "$digest_v1" ] || fail "gantry releases 0.1.0 records no digest"
cid="$(docker ps -q --filter "label=io.gantry.project=$project" --filter label=io.gantry.release=0.1.0 | head -n1)"
docker image inspect --format '{{join .RepoDigests " "}}' "$(docker inspect --format '{{.Image}}' "$cid")" |
	grep -q "hello/web@$digest_v1" || fail "the 0.1.0 container does not run the released digest $digest_v1"
printf '    %s/version -> %s; the container runs hello/web@%s\n' "$url" "$v1" "$digest_v1"
git tag --list 'v*' | grep -qx v0.1.0 || fail "gantry release made no git tag v0.1.0"
done_step "0.1.0 released, tagged v0.1.0, deployed by digest"

section "Release 0.2.0, a breaking change whose health check fails"
sed -i 's/^\tmode    = "healthy"/\tmode    = "unhealthy"/' main.go
grep -q 'mode    = "unhealthy"' main.go || fail "could not switch main.go to the unhealthy mode"
commit $'feat!: answer 500 on /healthz\n\nBREAKING CHANGE: the health check fails (on purpose, for the demo).'
binaries
show "$GANTRY" release || fail "gantry release of 0.2.0 failed"
rollback_start="$(now_us)"
rc=0
show "$GANTRY" deploy staging --release 0.2.0 || rc=$?
rollback_time="$(secs "$rollback_start")"
case "$rc" in
0) fail "deploying the unhealthy 0.2.0 exited 0; it must fail with a non-zero exit code" ;;
2 | 5 | 6) fail "deploying 0.2.0 exited $rc (bad input, busy or Docker unreachable) before reaching the health gate" ;;
esac
v2="$(serving)"
[ "$v2" = 0.1.0 ] || fail "after the failed 0.2.0 deploy, $url/version says \"$v2\", want 0.1.0 (the rollback)"
running_new="$(docker ps -q --filter "label=io.gantry.project=$project" --filter "label=io.gantry.release=0.2.0")"
[ -z "$running_new" ] || fail "containers of the failed release 0.2.0 are still running: $running_new"
printf '    gantry exited %d; %s/version -> %s\n' "$rc" "$url" "$v2"
done_step "0.2.0 failed its health gate, rolled back (exit $rc)"

section "A version tag never moves"
echo "    gantry push of the 0.2.0 build as tag 0.1.0 (checked before any tag moves):"
rc_push=0
show "$GANTRY" push web --tag 0.1.0 2>&1 | sed 's/^/    /' || rc_push=${PIPESTATUS[0]}
[ "$rc_push" -ne 0 ] || fail "gantry push moved the immutable tag 0.1.0"
echo "    docker push of another image as 127.0.0.1:15000/hello/web:0.1.0 (refused by the registry itself):"
export DOCKER_CONFIG="$demo_dir/docker-config"
printf '%s' "$DEMO_REGISTRY_PASSWORD" | docker login -u demo --password-stdin "$registry_addr" >/dev/null 2>&1 ||
	fail "docker login to $registry_addr failed"
docker tag gantry-example/app:1.1.0 "$registry_addr/hello/web:0.1.0"
rc_docker=0
out="$(docker push "$registry_addr/hello/web:0.1.0" 2>&1)" || rc_docker=$?
docker rmi "$registry_addr/hello/web:0.1.0" >/dev/null 2>&1 || true
unset DOCKER_CONFIG
[ "$rc_docker" -ne 0 ] || fail "docker push moved the immutable tag 0.1.0 in gantry's registry"
printf '    %s\n' "$(echo "$out" | tail -n 1)"
now_v1="$(curl -fsS -u "demo:$DEMO_REGISTRY_PASSWORD" -o /dev/null -D - \
	-H 'Accept: application/vnd.oci.image.index.v1+json' \
	"http://$registry_addr/v2/hello/web/manifests/0.1.0" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')"
[ "$now_v1" = "$digest_v1" ] || fail "tag 0.1.0 holds $now_v1 after the refused pushes, want $digest_v1"
printf '    tag 0.1.0 still holds %s\n' "$now_v1"
done_step "moving tag 0.1.0 refused, client and server side"

section "Kill gantry in the middle of a deploy, and recover"
sed -i 's/^\tmode    = "unhealthy"/\tmode    = "healthy"/' main.go
commit "fix: answer 200 on /healthz again"
binaries
"$GANTRY" release >/dev/null 2>&1 || fail "gantry release of 0.2.1 failed"
echo "    $ gantry release   # 0.2.1"
echo "    released 0.2.1; deploying it in the background, then kill -9 while it waits for health"
"$GANTRY" deploy staging --release 0.2.1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	[ -n "$(docker ps -q --filter "label=io.gantry.project=$project" --filter "label=io.gantry.release=0.2.1")" ] && break
	sleep 0.1
done
disown "$pid" # the shell would announce the kill; the demo says it
kill -9 "$pid" 2>/dev/null || fail "gantry finished before it could be killed"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
printf '    killed gantry (pid %d); the record says the deployment of 0.2.1 is still deploying\n' "$pid"
echo "    the next command on staging finds it and rolls back to the release that served:"
show "$GANTRY" status staging || fail "gantry status staging failed"
v3="$(serving)"
[ "$v3" = 0.1.0 ] || fail "after recovery $url/version says \"$v3\", want 0.1.0"
printf '    %s/version -> %s\n' "$url" "$v3"
done_step "kill -9 mid-deploy recovered to 0.1.0"

section "Deploy the shop stack: migrate job, then api (secret, volume), then web"
(
	cd "$here/shop"
	show "$GANTRY" deploy staging --release 1.0.0
) || fail "deploying examples/shop failed"
shop_health="$(curl -fsS --max-time 2 http://127.0.0.1:18090/healthz 2>/dev/null || echo nothing)"
[ "$shop_health" = ok ] || fail "shop's web answers \"$shop_health\" on /healthz, want ok (it checks the api)"
printf '    http://127.0.0.1:18090/healthz -> %s (web reaches a healthy api)\n' "$shop_health"
done_step "shop deployed in dependency order"

# ================================================ blue/green (issue 5)
# gantry proxy on 127.0.0.1:18085 in front of a routed web service (its own
# scratch project, hello-bg: a routed service publishes no fixed port);
# 1.0.0 is deployed, then 1.1.0 while a bounded curl loop runs against the
# proxy: no request may fail.
bg_dir="$demo_dir/bluegreen"
bg_addr=127.0.0.1:18085
bg_url="http://$bg_addr"
proxy_pid=
load_pid=
stop_proxy() {
	if [ -n "$load_pid" ]; then
		kill "$load_pid" 2>/dev/null || true
		wait "$load_pid" 2>/dev/null || true
		load_pid=
	fi
	if [ -n "$proxy_pid" ]; then
		kill "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
		proxy_pid=
	fi
}
trap 'stop_proxy; stop_registry' EXIT

# start_proxy LOG: `gantry proxy` for the project in the current directory,
# in the background (proxy_pid), once it says where its admin socket is.
start_proxy() {
	echo '    $ gantry proxy &'
	"$GANTRY" proxy >"$1" 2>&1 &
	proxy_pid=$!
	for _ in $(seq 1 100); do
		grep -q 'admin socket' "$1" && return 0
		kill -0 "$proxy_pid" 2>/dev/null || fail "gantry proxy exited: $(tail -n 5 "$1")"
		sleep 0.1
	done
	fail "gantry proxy did not start (log: $1)"
}

# load OUT STOP [URL [MAX [SECS]]]: GET URL/version (default $bg_url) in a
# loop, one line "CODE VERSION" per request in OUT (000 for a connection
# error), until the file STOP exists; at most MAX requests (600) and SECS
# seconds (20).
load() {
	local end=$((SECONDS + ${5:-20})) max=${4:-600} n=0 out code body base=${3:-$bg_url}
	while [ "$n" -lt "$max" ] && [ "$SECONDS" -lt "$end" ] && [ ! -e "$2" ]; do
		out="$(curl -s --max-time 2 -w ' %{http_code}' "$base/version" 2>/dev/null)" || true
		code="${out##* }" body="${out% *}"
		[ "$out" != "$code" ] || body=
		body="${body//$'\n'/}"
		printf '%s %s\n' "${code:-000}" "${body:--}" >>"$1"
		n=$((n + 1))
	done
}

section "Blue/green deploy of 1.0.0 -> 1.1.0 through gantry proxy, under load"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$bg_url/" || true)" = 000 ] ||
	fail "something already listens on $bg_addr; stop it and run again"
mkdir -p "$bg_dir"
cd "$bg_dir"
cat >gantry.yaml <<YAML
project: hello-bg
compose: compose.yaml
proxy:
  listen: $bg_addr
  drain_timeout: 5s
environments:
  staging:
    health:
      window: 30s
      min_healthy: 1s
    routes:
      web: { port: 8080 }          # blue/green behind the proxy
YAML
cat >compose.yaml <<'YAML'
services:
  web:
    image: gantry-example/app:1.0.0   # no ports: gantry publishes 8080 on loopback for the proxy
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 2s
      retries: 3
    read_only: true
YAML
echo "    $bg_dir/gantry.yaml: staging routes web (port 8080) through the proxy on $bg_addr"
start_proxy "$demo_dir/proxy.log"
sed 's/^/    /' "$demo_dir/proxy.log"
echo '    $ gantry deploy staging --release 1.0.0'
"$GANTRY" deploy staging --release 1.0.0 >"$demo_dir/bg-deploy-1.log" 2>&1 ||
	fail "deploying 1.0.0 behind the proxy failed: $(tail -n 5 "$demo_dir/bg-deploy-1.log")"
sed -n 's/^deployed/    deployed/p' "$demo_dir/bg-deploy-1.log"
bg_v1="$(curl -fsS --max-time 2 "$bg_url/version" 2>/dev/null || echo nothing)"
[ "$bg_v1" = 1.0.0 ] || fail "through the proxy $bg_url/version says \"$bg_v1\", want 1.0.0"
load_out="$demo_dir/load.txt" load_stop="$demo_dir/load.stop"
rm -f "$load_out" "$load_stop"
: >"$load_out"
echo "    curl loop on $bg_url/version (at most 600 requests, 20 s, --max-time 2 each) ..."
load "$load_out" "$load_stop" &
load_pid=$!
for _ in $(seq 1 50); do # let the old release answer some first
	[ "$(wc -l <"$load_out")" -ge 20 ] && break
	sleep 0.1
done
bg_rc=0
echo '    $ gantry deploy staging --release 1.1.0 --image web=gantry-example/app:1.1.0'
"$GANTRY" deploy staging --release 1.1.0 --image web=gantry-example/app:1.1.0 >"$demo_dir/bg-deploy-2.log" 2>&1 || bg_rc=$?
sed -n 's/^\[ *[0-9.]*s\] web *\(switched\|drain\)/    &/p; s/^deployed/    deployed/p' "$demo_dir/bg-deploy-2.log"
[ "$bg_rc" = 0 ] || fail "deploying 1.1.0 behind the proxy exited $bg_rc: $(tail -n 5 "$demo_dir/bg-deploy-2.log")"
sleep 1 # a second of the new release under the same load
touch "$load_stop"
wait "$load_pid" || true
load_pid=
bg_total="$(wc -l <"$load_out")"
bg_failed="$(grep -cv '^2' "$load_out" || true)"
bg_runs="$(awk '{print $2}' "$load_out" | uniq -c | awk '{printf "%s%s x%d", (NR > 1 ? ", then " : ""), $2, $1}')"
printf '    %d requests, %d failed; answered by: %s\n' "$bg_total" "$bg_failed" "$bg_runs"
[ "$bg_failed" = 0 ] || fail "$bg_failed of $bg_total requests through the proxy failed during the blue/green deploy: $(grep -v '^2' "$load_out" | sort | uniq -c | tr '\n' ';')"
[ "$(awk '{print $2}' "$load_out" | uniq | tr '\n' ' ')" = "1.0.0 1.1.0 " ] ||
	fail "the versions answered were $bg_runs; want some 1.0.0, then only 1.1.0"
done_step "1.0.0 -> 1.1.0 blue/green: $bg_total requests, $bg_failed failed"
# ========================================= end of blue/green (issue 5)

# ==================================================== canary (issue 5)
# The same proxy and project: web's route gets a canary block, and 1.2.0,
# a release that passes its health gate but answers 500 to every other
# request (APP_ERROR_RATE), goes in as a canary under a bounded curl load.
# Its error ratio aborts it at the first step: all traffic back to 1.1.0,
# no request failed by the switch (a connection error, or a 502/503 the
# proxy answers itself); the 500s are the bad release's own.
section "Canary of a bad release 1.1.0 -> 1.2.0, aborted by its error rate"
cat >>gantry.yaml <<'YAML'
        canary:                    # added for this step
          steps: [{ weight: 50, pause: 10s }, { weight: 100, pause: 5s }]
          abort: { max_error_ratio: 0.1, min_requests: 10, interval: 250ms }
YAML
sed -i 's/^      web: { port: 8080 }          # blue\/green behind the proxy$/      web:\n        port: 8080/' gantry.yaml
grep -q '^        port: 8080$' gantry.yaml || fail "could not add the canary block to $bg_dir/gantry.yaml"
cat >>compose.yaml <<'YAML'
    environment:
      APP_ERROR_RATE: "0.5"     # 1.2.0 answers 500 to every other request
YAML
sed 's/^/    /' gantry.yaml | sed -n '/routes:/,$p'
# canary_load OUT STOP: like load, one line "CODE PROXY-HEADER" per request
# (the proxy names its own answers in X-Gantry-Proxy), at most 600
# requests and 20 s.
canary_load() {
	local end=$((SECONDS + 20)) n=0 out
	while [ "$n" -lt 600 ] && [ "$SECONDS" -lt "$end" ] && [ ! -e "$2" ]; do
		out="$(curl -s -o /dev/null --max-time 2 -w '%{http_code} %header{x-gantry-proxy}' "$bg_url/version" 2>/dev/null)" || true
		printf '%s\n' "${out:-000}" >>"$1"
		n=$((n + 1))
	done
}
rm -f "$load_out" "$load_stop"
: >"$load_out"
echo "    curl loop on $bg_url/version (at most 600 requests, 20 s, --max-time 2 each) ..."
canary_load "$load_out" "$load_stop" &
load_pid=$!
sleep 0.5
cn_rc=0
echo '    $ gantry deploy staging --release 1.2.0 --image web=gantry-example/app:1.1.0'
"$GANTRY" deploy staging --release 1.2.0 --image web=gantry-example/app:1.1.0 >"$demo_dir/canary-deploy.log" 2>&1 || cn_rc=$?
sed -n 's/^\[ *[0-9.]*s\] web *\(canary\|drain\)/    &/p' "$demo_dir/canary-deploy.log"
sleep 0.5 # the stable release alone again, under the same load
touch "$load_stop"
wait "$load_pid" || true
load_pid=
stop_proxy
case "$cn_rc" in
0) fail "the bad canary 1.2.0 was promoted; its error ratio should have aborted it (log: $demo_dir/canary-deploy.log)" ;;
3) ;;
*) fail "deploying the canary 1.2.0 exited $cn_rc, want 3 (rolled back): $(tail -n 5 "$demo_dir/canary-deploy.log")" ;;
esac
cn_total="$(wc -l <"$load_out")"
cn_own="$(grep -c '^500 *$' "$load_out" || true)"
cn_failed="$(grep -cv '^\(200\|500\) *$' "$load_out" || true)"
printf '    %d requests: %d answered 500 by the bad release itself, %d failed by the switch\n' "$cn_total" "$cn_own" "$cn_failed"
[ "$cn_failed" = 0 ] || fail "$cn_failed of $cn_total requests failed by the canary's switch: $(grep -v '^\(200\|500\) *$' "$load_out" | sort | uniq -c | tr '\n' ';')"
[ "$cn_own" -gt 0 ] || fail "no request reached the bad canary; the load did not see it"
cn_reason="$("$GANTRY" history staging --limit 1 --output json | sed -n 's/^    "reason": "\(.*\)",$/\1/p' | head -n 1)"
case "$cn_reason" in
*"the canary of web failed"*max_error_ratio*) ;;
*) fail "the record does not say why the canary failed: \"$cn_reason\"" ;;
esac
echo '    $ gantry history staging --limit 1 --output json   # the reason recorded:'
printf '%s\n' "$cn_reason" | fold -s -w 72 | sed 's/^/      /'
done_step "1.2.0 canary aborted by its 5xx ratio, $cn_failed failed"
# =============================================== end of canary (issue 5)

# ===================================================== promotion (issue 4)
# gantry server with a self-signed certificate; tokens for alice (editor)
# and bob (admin); alice promotes 0.1.0 from staging to a protected
# production, it waits for an approval, bob approves it, production runs
# exactly the digests staging ran.
server_addr=127.0.0.1:18443
prod_url="http://127.0.0.1:18081"
server_pid=
stop_server() {
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
	fi
}
trap 'stop_server; stop_proxy; stop_registry' EXIT

# as_person NAME CMD...: run a gantry command through the server with
# NAME's token (the token is the person: $alice, $bob), printed the way a
# user would type it.
as_person() {
	local who=$1 tok=${!1} shown
	shift
	shown=("$@")
	[ "${shown[0]}" = "$GANTRY" ] && shown[0]=gantry
	shown=("${shown[@]/#* */\"&\"}") # quote the arguments with spaces
	printf '    $ GANTRY_TOKEN=$%s %s\n' "${who^^}" "${shown[*]}"
	GANTRY_SERVER="https://$server_addr" GANTRY_FINGERPRINT="$fingerprint" GANTRY_TOKEN="$tok" \
		GANTRY_CONFIG="$demo_dir/no-contexts.yaml" "$@"
}

section "Promote 0.1.0 to production through gantry server, with an approval"
cd "$project_dir"
for a in "$server_addr" 127.0.0.1:18081; do
	[ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "https://$a/" || true)" = 000 ] &&
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$a/" || true)" = 000 ] ||
		fail "something already listens on $a; stop it and run again"
done
cat >>gantry.yaml <<'YAML'
  production:
    env_files: [production.env]    # HELLO_PORT=18081, APP_ENV=production
    protected: true                # only gantry promote reaches it
    requires: [staging]            # the release must have succeeded there
    approvals: { required: 1, from: [role:admin] }
    health:
      window: 1m
      min_healthy: 3s
      probes:
        web:
          http: { port: 8080, path: /healthz, status: 200 }
          interval: 1s
YAML
printf 'HELLO_PORT=18081\nAPP_ENV=production\n' >production.env
commit "chore: production, protected, one approval from an admin"
echo "    production: protected, requires staging, 1 approval from role:admin"
alice="$("$GANTRY" token create --name alice --role editor 2>/dev/null)" || fail "gantry token create alice failed"
bob="$("$GANTRY" token create --name bob --role admin 2>/dev/null)" || fail "gantry token create bob failed"
echo '    $ ALICE=$(gantry token create --name alice --role editor)'
echo '    $ BOB=$(gantry token create --name bob --role admin)'
echo "    \$ gantry server --addr $server_addr --tls-self-signed &"
"$GANTRY" server --addr "$server_addr" --tls-self-signed >"$demo_dir/server.log" 2>&1 &
server_pid=$!
fingerprint=
for _ in $(seq 1 200); do
	fingerprint="$(sed -n 's/^TLS certificate SHA-256 fingerprint: //p' "$demo_dir/server.log")"
	if [ -n "$fingerprint" ] &&
		[ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "https://$server_addr/startupz" || true)" = 200 ]; then
		break
	fi
	kill -0 "$server_pid" 2>/dev/null || fail "gantry server exited: $(tail -n 5 "$demo_dir/server.log")"
	sleep 0.1
done
[ -n "$fingerprint" ] || fail "gantry server printed no fingerprint (log: $demo_dir/server.log)"
grep -E 'listening|fingerprint' "$demo_dir/server.log" | sed 's/^/    /'
out="$(as_person alice "$GANTRY" promote staging production --release 0.1.0)" || fail "gantry promote as alice failed: $out"
printf '%s\n' "$out" | sed '1!s/^/    /'
id="$(printf '%s\n' "$out" | sed -n 's/^deployment \([0-9][0-9]*\): .*awaits approval$/\1/p' | head -n1)"
[ -n "$id" ] || fail "gantry promote did not leave a deployment awaiting approval: $out"
as_person alice "$GANTRY" deployments --pending | sed '1!s/^/    /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "gantry deployments --pending failed"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$prod_url/version" || true)" = 000 ] ||
	fail "production answers before anyone approved deployment $id"
rc_self=0
out="$(as_person alice "$GANTRY" approve "$id" 2>&1)" || rc_self=$?
printf '%s\n' "$out" | sed '1!s/^/    /'
[ "$rc_self" = 2 ] || fail "alice approving her own request exited $rc_self, want 2 (self-approval refused)"
as_person bob "$GANTRY" approve "$id" --comment "staging is green" 2>&1 | sed '1!s/^/    /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "gantry approve $id as bob failed"
as_person bob "$GANTRY" status production | sed '1!s/^/    /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "gantry status production failed"
prod="$(curl -fsS --max-time 2 "$prod_url/version" 2>/dev/null || echo nothing)"
[ "$prod" = 0.1.0 ] || fail "after the approval $prod_url/version says \"$prod\", want 0.1.0"
printf '    %s/version -> %s\n' "$prod_url" "$prod"
stop_server
done_step "0.1.0 promoted: alice asked, bob approved"
# ============================================== end of promotion (issue 4)

# ========================================================= swarm (issue 8)
# hello's staging moves to a swarm: a single-node swarm made on this engine
# for the step alone (advertised on 127.0.0.1, cluster and data ports on
# loopback, its own address pool), an environment `swarm:` with the same
# releases, and the swarm left at the end, also on a failure or Ctrl-C. An
# engine that is in a swarm already is not touched: the step says so and is
# skipped. The node pulls from the demo's registry on 127.0.0.1:15000.
swarm_lock=/tmp/gantry-swarm-test.lock    # the swarm tests' lock: one swarm on the engine at a time
swarm_marker=/tmp/gantry-demo-swarm.node  # the node of the swarm a demo made, until it leaves it
swarm_made=
swarm_had_gwbridge=
leave_swarm() {
	if [ -n "$swarm_made" ]; then
		swarm_made=
		docker swarm leave --force >/dev/null 2>&1 || true
		rm -f "$swarm_marker"
		if [ -z "$swarm_had_gwbridge" ]; then # it came with the swarm: it goes with it
			for _ in $(seq 1 20); do
				docker network rm docker_gwbridge >/dev/null 2>&1 && break
				docker network inspect docker_gwbridge >/dev/null 2>&1 || break
				sleep 0.5
			done
		fi
	fi
	exec 9>&- 2>/dev/null || true
}
trap 'leave_swarm; stop_server; stop_proxy; stop_registry' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Move staging to a single-node swarm: deploy, status per node, a whole-release rollback"
cd "$project_dir"
swarm_skip=
exec 9>>"$swarm_lock"
if ! flock -w 30 9; then
	swarm_skip="a swarm test of gantry holds $swarm_lock (it has a swarm of its own on this engine)"
else
	swarm_node="$(docker info --format '{{.Swarm.NodeID}}')"
	if [ -n "$swarm_node" ] && [ -f "$swarm_marker" ] && [ "$(cat "$swarm_marker")" = "$swarm_node" ]; then
		echo "    leaving swarm node $swarm_node, which an interrupted demo run made"
		docker swarm leave --force >/dev/null || fail "docker swarm leave --force of the swarm an earlier demo made failed"
		rm -f "$swarm_marker"
	fi
	swarm_state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
	[ "$swarm_state" = inactive ] ||
		swarm_skip="this Docker engine is in swarm mode already (state $swarm_state); the demo makes a swarm of its own and never joins, leaves or changes one it did not make"
fi
if [ -n "$swarm_skip" ]; then
	exec 9>&-
	printf '    skipped: %s\n' "$swarm_skip"
	swarm_result="swarm step skipped: $swarm_skip"
	done_step "swarm: skipped (engine busy in a swarm)"
else
	sw_addr=127.0.0.1:18087 sw_url=http://127.0.0.1:18087
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$sw_url/" || true)" = 000 ] ||
		fail "something already listens on $sw_addr; stop it and run again"
	docker network inspect docker_gwbridge >/dev/null 2>&1 && swarm_had_gwbridge=1
	echo '    $ docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:24377 --data-path-port 24789 --default-addr-pool 10.212.0.0/16'
	docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:24377 --data-path-port 24789 \
		--default-addr-pool 10.212.0.0/16 >"$demo_dir/swarm-init.log" 2>&1 ||
		fail "docker swarm init failed: $(grep -v -i token "$demo_dir/swarm-init.log" | tail -n 3)"
	swarm_made=1
	docker info --format '{{.Swarm.NodeID}}' >"$swarm_marker"
	printf '    a single-node swarm, node %s (manager); the demo leaves it at the end of this step\n' "$(cat "$swarm_marker")"
	cat >compose.swarm.yaml <<'YAML'
# hello on a swarm: no 127.0.0.1:PORT (Swarm publishes on every interface of
# every node), so nothing is published here; web is routed through gantry
# proxy (gantry.yaml), and api reaches web by its name on the overlay
# network. A second service shows a release rolled back whole.
services:
  web:
    image: 127.0.0.1:15000/hello/web
    environment: { APP_ENV: swarm }
    healthcheck: { test: ["CMD", "/app", "check"], interval: 1s, timeout: 3s, retries: 2 }
    read_only: true
    user: "65532:65532"
    deploy: { replicas: 2 }
    networks: [back]
  api:
    image: 127.0.0.1:15000/hello/web
    environment: { APP_ENV: swarm }
    healthcheck: { test: ["CMD", "/app", "check"], interval: 1s, timeout: 3s, retries: 2 }
    read_only: true
    user: "65532:65532"
    depends_on: [web]
    networks: [back]
networks:
  back: {}
YAML
	cat >>gantry.yaml <<YAML
  swarm:
    swarm: ${DOCKER_HOST:-unix:///var/run/docker.sock}   # a manager's Docker host
    compose_files: [compose.swarm.yaml]
    keep_releases: 1               # secrets and configs of 1 earlier release stay on the swarm
    health: { window: 40s, min_healthy: 1s }    # min_healthy is Swarm's update monitor
    routes:
      web: { port: 8080 }          # gantry proxy -> web's running tasks
proxy:
  listen: $sw_addr
YAML
	commit "chore: a swarm environment"
	echo "    gantry.yaml: environment swarm (swarm: the local engine, now a manager; compose.swarm.yaml), web routed through gantry proxy on $sw_addr"
	start_proxy "$demo_dir/swarm-proxy.log"
	swarm_deploy() { # swarm_deploy LOG ARGS...: a deploy to the swarm, its lines indented
		local log=$1 rc=0
		shift
		printf '    $ gantry deploy swarm %s\n' "$*"
		"$GANTRY" deploy swarm "$@" >"$log" 2>&1 || rc=$?
		sed 's/^/    /' "$log"
		return "$rc"
	}
	swarm_deploy "$demo_dir/swarm-1.log" --release 0.1.0 --image api=127.0.0.1:15000/hello/web:0.1.0 ||
		fail "deploying 0.1.0 to the swarm failed"
	show "$GANTRY" status swarm | sed '1!s/^/    /'
	[ "${PIPESTATUS[0]}" = 0 ] || fail "gantry status swarm failed"
	show "$GANTRY" proxy status | sed '1!s/^/    /'
	[ "${PIPESTATUS[0]}" = 0 ] || fail "gantry proxy status failed"
	sw_v1="$(curl -fsS --max-time 2 "$sw_url/version" 2>/dev/null || echo nothing)"
	[ "$sw_v1" = 0.1.0 ] || fail "through the proxy $sw_url/version says \"$sw_v1\", want 0.1.0 (web's tasks on the swarm)"
	# web on the healthy 0.2.1, api on the broken 0.2.0 build: web's update
	# succeeds, api's never gets healthy, and both go back to 0.1.0, while
	# a curl loop goes through the proxy to web's tasks.
	sw_load="$demo_dir/swarm-load.txt" sw_stop="$demo_dir/swarm-load.stop"
	rm -f "$sw_load" "$sw_stop"
	: >"$sw_load"
	echo "    curl loop on $sw_url/version (at most 3000 requests, 60 s) ..."
	load "$sw_load" "$sw_stop" "$sw_url" 3000 60 &
	load_pid=$!
	swarm_rc=0
	swarm_deploy "$demo_dir/swarm-2.log" --release 0.2.1 --image api=127.0.0.1:15000/hello/web:0.2.0 || swarm_rc=$?
	touch "$sw_stop"
	wait "$load_pid" || true
	load_pid=
	sw_total="$(wc -l <"$sw_load")"
	sw_failed="$(grep -cv '^2' "$sw_load" || true)"
	sw_runs="$(awk '{print $2}' "$sw_load" | sort | uniq -c | awk '{printf "%s%s x%d", (NR > 1 ? ", " : ""), $2, $1}')"
	printf '    through the proxy: %d requests, %d failed; answered by: %s\n' "$sw_total" "$sw_failed" "$sw_runs"
	[ "$sw_failed" = 0 ] || fail "$sw_failed of $sw_total requests through the proxy to the swarm failed: $(grep -v '^2' "$sw_load" | sort | uniq -c | tr '\n' ';')"
	[ "$swarm_rc" = 3 ] || fail "deploying 0.2.1 with a broken api to the swarm exited $swarm_rc, want 3 (failed, rolled back)"
	grep -q 'every service (.*) rolled back to 0.1.0 together' "$demo_dir/swarm-2.log" ||
		fail "gantry did not say that every service went back to 0.1.0 together"
	for s in web api; do
		got="$(docker service inspect "hello-swarm_$s" --format '{{index .Spec.Labels "io.gantry.release"}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' 2>/dev/null || true)"
		case "$got" in
		"0.1.0 "*paused* | "0.1.0 updating" | "0.1.0 rollback_started") fail "service $s is left $got" ;;
		"0.1.0 "*) ;;
		*) fail "after the rollback service $s runs \"$got\" on the swarm, want release 0.1.0" ;;
		esac
	done
	show "$GANTRY" status swarm | sed '1!s/^/    /'
	[ "${PIPESTATUS[0]}" = 0 ] || fail "gantry status swarm failed"
	stop_proxy
	echo '    $ docker swarm leave --force'
	leave_swarm
	[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = inactive ] || fail "the engine is still in the swarm the demo made"
	swarm_result="on a single-node swarm, 0.1.0 ran 2 web + 1 api tasks; 0.2.1
      with a broken api rolled back whole to 0.1.0 (exit $swarm_rc) while gantry
      proxy sent $sw_total requests to web's tasks, $sw_failed failed; the demo
      left the swarm"
	done_step "swarm: rolled back whole, $sw_failed of $sw_total via proxy failed"
fi
# ================================================== end of swarm (issue 8)

section "Releases, status and history of staging"
cd "$project_dir"
show "$GANTRY" releases || fail "gantry releases failed"
echo
show "$GANTRY" status staging || fail "gantry status staging failed"
echo
show "$GANTRY" history staging || fail "gantry history staging failed"
done_step "status and history shown"

section "Summary"
final="$(serving)"
[ "$final" = 0.1.0 ] || fail "at the end $url/version says \"$final\", want 0.1.0"
cat <<EOF

  What happened
    - gantry release made 0.1.0 from a feat commit: tags, a linux/amd64 +
      linux/arm64 image pushed to gantry's registry, a git tag; it passed the
      health gate on staging, pinned by digest
    - release 0.2.0 (a breaking change) failed its health gate; gantry exited
      $rc and rolled back to 0.1.0 by itself in $rollback_time (deploy plus rollback)
    - moving tag 0.1.0 to other bytes was refused, by gantry and by the registry
    - gantry was killed (kill -9) while deploying 0.2.1; the next command
      rolled the environment back to 0.1.0 and recorded why
    - the shop stack went up in dependency order: the migration job ran to
      completion, then the api (a secret, a named volume), then web
    - behind gantry proxy ($bg_addr), a blue/green deploy replaced 1.0.0
      by 1.1.0 under a curl loop: $bg_total requests, $bg_failed failed
      (answered by $bg_runs)
    - a canary of 1.2.0, which answered 500 to every other request, took 50%
      of the traffic and was aborted by its error ratio: all traffic back to
      1.1.0, $cn_total requests, $cn_own answered 500 by 1.2.0 itself, $cn_failed
      failed by the switch
    - through gantry server (TLS, its certificate pinned by fingerprint)
      alice promoted 0.1.0 to the protected production; it waited until bob
      approved (alice could not approve her own request); production runs
      the digest staging ran: $prod_url/version answers $prod
    - $swarm_result
    - $url/version answers $final

  Steps
$(printf '    %s\n' "${summary[@]}")
    $(printf '%-56s %8s' total "$(secs "$demo_start")")

  The stacks keep running: curl $url/ and http://127.0.0.1:18090/ (staging),
  $prod_url/ (production)
  The scratch repository is $project_dir (try gantry releases there).
  Remove it with: examples/demo.sh --clean
EOF
