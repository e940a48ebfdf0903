#!/usr/bin/env bash
# ensure-compose.sh makes `docker compose` (the Compose v2 CLI plugin) work.
#
# gantry itself does not need it: the bench times gantry against it. No machine
# here reaches Docker's download site, so the plugin is built from the Go module
# proxy into ~/.docker/cli-plugins/docker-compose. Idempotent; waits for a build
# of the same plugin that is already running instead of starting a second one.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
PLUGIN="$PLUGIN_DIR/docker-compose"
BUILD_WAIT="${GANTRY_COMPOSE_BUILD_WAIT:-900}"
export PATH="/usr/local/go/bin:$PATH"

compose_works() { timeout 30 docker compose version >/dev/null 2>&1; }

if compose_works; then
	say "$(docker compose version 2>/dev/null | head -1)"
	exit 0
fi
command -v docker >/dev/null 2>&1 || die "the docker CLI is missing; run scripts/ensure-docker.sh first"

# build_running prints the pid of a `go build` writing the plugin, if any.
build_running() {
	local d
	for d in /proc/[0-9]*; do
		if tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -q "go build .*cli-plugins/docker-compose"; then
			echo "${d#/proc/}"
			return 0
		fi
	done
	return 1
}

if pid="$(build_running)"; then
	printf 'gantry-setup: a build of the compose plugin is already running (pid %s); waiting up to %ss ' "$pid" "$BUILD_WAIT"
	i=0
	while [ "$i" -lt "$BUILD_WAIT" ] && build_running >/dev/null; do
		[ $((i % 10)) -eq 0 ] && printf '.'
		sleep 1
		i=$((i + 1))
	done
	printf '\n'
	if compose_works; then
		say "$(docker compose version 2>/dev/null | head -1)"
		exit 0
	fi
	say "that build did not give a working plugin; building one here"
fi

command -v go >/dev/null 2>&1 || die "go is needed to build the compose plugin; run scripts/ensure-go.sh"
LOG="${TMPDIR:-/tmp}/gantry-compose-build.log"
say "building docker compose $COMPOSE_VERSION from the Go module proxy into $PLUGIN (a few minutes; log: $LOG)"
mkdir -p "$PLUGIN_DIR"
# Outside any module, so that no go.mod is touched.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && GOFLAGS=-mod=mod GO111MODULE=on timeout 600 go mod download "github.com/docker/compose/v2@$COMPOSE_VERSION") >"$LOG" 2>&1; then
	tail -n 20 "$LOG" >&2
	die "go mod download github.com/docker/compose/v2@$COMPOSE_VERSION failed (log: $LOG)"
fi
src="$(go env GOMODCACHE)/github.com/docker/compose/v2@$COMPOSE_VERSION"
[ -d "$src" ] || die "module source not found at $src after go mod download"
if ! (cd "$src" && CGO_ENABLED=0 timeout "$BUILD_WAIT" go build -trimpath \
	-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
	-o "$PLUGIN.tmp" ./cmd) >>"$LOG" 2>&1; then
	tail -n 20 "$LOG" >&2
	rm -f "$PLUGIN.tmp"
	die "building docker compose failed (log: $LOG)"
fi
mv -f "$PLUGIN.tmp" "$PLUGIN"
compose_works || die "built $PLUGIN but 'docker compose version' still fails"
say "$(docker compose version 2>/dev/null | head -1)"
