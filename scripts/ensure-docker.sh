#!/usr/bin/env bash
# ensure-docker.sh makes sure a Docker Engine answers on this machine.
#
# Idempotent: when `docker info` already answers it does nothing. Otherwise it
# installs Debian's docker.io when dockerd is missing (root + apt-get only) and
# starts dockerd in the background. It never uses systemd: CI machines have no
# systemd running.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

WAIT_SECONDS="${GANTRY_DOCKER_WAIT:-60}"
# dockerd lives in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

docker_answers() {
	command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

if docker_answers; then
	say "docker engine is running (server $(timeout 10 docker info --format '{{.ServerVersion}}' 2>/dev/null || echo '?'))"
	exit 0
fi

# Install when the daemon or the client is missing.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		die "Docker Engine is not installed. Install it, then run this again:
  on Debian/Ubuntu (as root): apt-get install docker.io
  elsewhere: install Docker Engine from your distribution's packages"
	fi
	# apt-get update only when the package lists do not know docker.io yet.
	candidate="$(apt-cache policy docker.io 2>/dev/null | awk '/Candidate:/ {print $2}')"
	if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
		say "refreshing package lists (apt-get update)"
		apt-get update -q
	fi
	say "installing docker.io (apt-get install -y docker.io)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
	command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH ($PATH)"
	# The package's postinst may have started the daemon already.
	if docker_answers; then
		say "docker engine is running after install"
		exit 0
	fi
fi

# Start dockerd ourselves (no systemd), logging where we can write.
LOG=/var/log/gantry-dockerd.log
if ! { touch "$LOG"; } 2>/dev/null; then
	LOG="${TMPDIR:-/tmp}/gantry-dockerd.log"
fi

if [ "$(id -u)" -ne 0 ]; then
	die "no Docker daemon answers and starting dockerd needs root.
  start it as root (sudo dockerd &), or make your user able to reach /var/run/docker.sock"
fi

# dockerd_pid prints the pid of a running dockerd, if any (no procps needed).
dockerd_pid() {
	local d
	for d in /proc/[0-9]*; do
		if [ "$(cat "$d/comm" 2>/dev/null)" = dockerd ]; then
			echo "${d#/proc/}"
			return 0
		fi
	done
	return 1
}

if pid="$(dockerd_pid)"; then
	say "dockerd is already running (pid $pid) but not answering yet; waiting for it"
else
	# A stale pid file from a killed daemon stops dockerd from starting.
	if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
		rm -f /var/run/docker.pid
	fi
	say "starting dockerd in the background (log: $LOG)"
	# In a session of its own: a Ctrl-C of make, or the end of the shell
	# that ran it, must not take the daemon (and every container) down.
	if command -v setsid >/dev/null 2>&1; then
		setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
	else
		nohup dockerd >>"$LOG" 2>&1 </dev/null &
	fi
fi

printf 'gantry-setup: waiting for the docker engine (up to %ss) ' "$WAIT_SECONDS"
i=0
while [ "$i" -lt "$WAIT_SECONDS" ]; do
	if docker_answers; then
		printf ' ok\n'
		say "docker engine is running (server $(timeout 10 docker info --format '{{.ServerVersion}}' 2>/dev/null || echo '?'))"
		exit 0
	fi
	printf '.'
	sleep 1
	i=$((i + 1))
done
printf ' timed out\n'
say "dockerd did not answer within ${WAIT_SECONDS}s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
