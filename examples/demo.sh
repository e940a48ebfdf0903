#!/usr/bin/env bash
# gantry's end-to-end demo, the main job of `make demo`:
#
#   1. build the example images (FROM scratch, no public registry)
#   2. deploy release 1.0.0 of examples/hello to staging: healthy, it succeeds
#   3. deploy release 2.0.0 whose health check fails: gantry must exit non-zero
#      and roll back by itself, and 1.0.0 must still be serving
#   4. kill -9 gantry in the middle of a deploy; the next command recovers
#   5. deploy the multi-service examples/shop stack (a job, a secret, a volume)
#   6. show `gantry status` and `gantry history`
#   7. print a summary
#
# Run it from anywhere; GANTRY is the gantry binary (default ./bin/gantry,
# relative to the current directory). `examples/demo.sh --clean` only removes
# what a run left behind. Traffic goes to 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
project=hello
project_dir="$here/hello"
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
steps_total=7
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
	for p in "$project" shop; do
		ids="$(docker ps -aq --filter "label=io.gantry.project=$p")"
		[ -z "$ids" ] || docker rm -f -v $ids >/dev/null
		ids="$(docker network ls -q --filter "label=io.gantry.project=$p")"
		[ -z "$ids" ] || docker network rm $ids >/dev/null
		ids="$(docker volume ls -q --filter "label=io.gantry.project=$p")"
		[ -z "$ids" ] || docker volume rm -f $ids >/dev/null
	done
	rm -rf "$project_dir/.gantry" "$here/shop/.gantry"
}

# ------------------------------------------------------------- preflight

command -v docker >/dev/null || fail "docker is not installed; run \`make deps\`"
command -v curl >/dev/null || fail "curl is not installed; install it (apt-get install curl)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers; run \`make deps\` to start one"

if [ "${1:-}" = "--clean" ]; then
	cleanup
	echo "demo: removed the hello and shop containers, networks, volumes and state directories"
	exit 0
fi

[ -x "$GANTRY" ] || fail "no gantry binary at $GANTRY; run \`make build\` or set GANTRY=/path/to/gantry"

printf '%sgantry demo%s: health-gated deploys with automatic rollback (%s)\n' "$bold" "$off" \
	"$({ "$GANTRY" version 2>/dev/null || echo "$GANTRY"; } | head -n1)"
cleanup
if [ "$(serving)" != nothing ]; then
	fail "something not started by gantry already answers on $url; stop it and run again"
fi

# ------------------------------------------------------------------ steps

section "Build the example images (FROM scratch)"
"$here/build.sh" --all | sed 's/^/    /'
done_step "built gantry-example/app images"

cd "$project_dir"

section "Deploy release 1.0.0 to staging (healthy)"
show "$GANTRY" deploy staging --release 1.0.0 || fail "deploying 1.0.0 failed; it should succeed"
v1="$(serving)"
[ "$v1" = 1.0.0 ] || fail "after deploying 1.0.0, $url/version says \"$v1\", want 1.0.0"
printf '    %s/version -> %s\n' "$url" "$v1"
done_step "1.0.0 deployed and serving"

section "Deploy release 2.0.0 with a failing health check"
echo "    gantry-example/app:2.0.0-unhealthy answers 500 on /healthz: gantry should roll back"
rollback_start="$(now_us)"
rc=0
show "$GANTRY" deploy staging --release 2.0.0 --image web=gantry-example/app:2.0.0-unhealthy || rc=$?
rollback_time="$(secs "$rollback_start")"
case "$rc" in
0) fail "deploying the unhealthy 2.0.0 exited 0; it must fail with a non-zero exit code" ;;
2 | 5 | 6) fail "deploying 2.0.0 exited $rc (bad input, busy or Docker unreachable) before reaching the health gate" ;;
esac
v2="$(serving)"
[ "$v2" = 1.0.0 ] || fail "after the failed 2.0.0 deploy, $url/version says \"$v2\", want 1.0.0 (the rollback)"
running_new="$(docker ps -q --filter "label=io.gantry.project=$project" --filter "label=io.gantry.release=2.0.0")"
[ -z "$running_new" ] || fail "containers of the failed release 2.0.0 are still running: $running_new"
printf '    gantry exited %d; %s/version -> %s\n' "$rc" "$url" "$v2"
done_step "2.0.0 failed its health gate, rolled back (exit $rc)"

section "Kill gantry in the middle of a deploy, and recover"
echo "    deploying 1.1.0 in the background, then kill -9 while it waits for health"
"$GANTRY" deploy staging --release 1.1.0 --image web=gantry-example/app:1.1.0 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	[ -n "$(docker ps -q --filter "label=io.gantry.project=$project" --filter "label=io.gantry.release=1.1.0")" ] && break
	sleep 0.1
done
disown "$pid" # the shell would announce the kill; the demo says it
kill -9 "$pid" 2>/dev/null || fail "gantry finished before it could be killed"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
printf '    killed gantry (pid %d); the record says deployment 3 is still deploying\n' "$pid"
echo "    the next command on staging finds it and rolls back to the release that served:"
show "$GANTRY" status staging || fail "gantry status staging failed"
v3="$(serving)"
[ "$v3" = 1.0.0 ] || fail "after recovery $url/version says \"$v3\", want 1.0.0"
printf '    %s/version -> %s\n' "$url" "$v3"
done_step "kill -9 mid-deploy recovered to 1.0.0"

section "Deploy the shop stack: migrate job, then api (secret, volume), then web"
(
	cd "$here/shop"
	show "$GANTRY" deploy staging --release 1.0.0
) || fail "deploying examples/shop failed"
shop_health="$(curl -fsS --max-time 2 http://127.0.0.1:18090/healthz 2>/dev/null || echo nothing)"
[ "$shop_health" = ok ] || fail "shop's web answers \"$shop_health\" on /healthz, want ok (it checks the api)"
printf '    http://127.0.0.1:18090/healthz -> %s (web reaches a healthy api)\n' "$shop_health"
done_step "shop deployed in dependency order"

# Hooks for later issues: further steps go here, before status and history.
#   - a healthy upgrade with no lost request (gantry-example/app:1.1.0, the proxy)
#   - a crashing release (gantry-example/app:2.0.0-crash)
#   - promote the same digests to production behind an approval
# Each adds a section/done_step pair and bumps steps_total.

section "Status and history of staging"
show "$GANTRY" status staging || fail "gantry status staging failed"
echo
show "$GANTRY" history staging || fail "gantry history staging failed"
done_step "status and history shown"

section "Summary"
final="$(serving)"
[ "$final" = 1.0.0 ] || fail "at the end $url/version says \"$final\", want 1.0.0"
cat <<EOF

  What happened
    - release 1.0.0 passed the health gate and went live on staging
    - release 2.0.0 failed its health gate; gantry exited $rc and rolled back
      to 1.0.0 by itself in $rollback_time (deploy plus rollback)
    - gantry was killed (kill -9) while deploying 1.1.0; the next command
      rolled the environment back to 1.0.0 and recorded why
    - the shop stack went up in dependency order: the migration job ran to
      completion, then the api (a secret, a named volume), then web
    - $url/version answers $final

  Steps
$(printf '    %s\n' "${summary[@]}")
    $(printf '%-56s %8s' total "$(secs "$demo_start")")

  The staging stacks keep running: curl $url/ and http://127.0.0.1:18090/
  Remove it with: examples/demo.sh --clean
EOF
