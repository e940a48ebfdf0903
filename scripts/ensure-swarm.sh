#!/usr/bin/env bash
# ensure-swarm.sh makes sure the two-node swarm tests can build their second
# node: `ip` (iproute2) for the network namespace and the veth pair, and
# `nsenter` (util-linux) to start a second dockerd in that namespace. No
# swarm is made here: the tests make their own and leave it. Idempotent.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
	say "ip and nsenter are installed (for the two-node swarm tests)"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	die "the two-node swarm tests need ${missing[*]}. Install it, then run this again:
  on Debian/Ubuntu (as root): apt-get install ${missing[*]}"
fi
candidate="$(apt-cache policy "${missing[0]}" 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
	say "refreshing package lists (apt-get update)"
	apt-get update -q
fi
say "installing ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
command -v ip >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 || die "installed ${missing[*]} but ip or nsenter is still not on PATH ($PATH)"
