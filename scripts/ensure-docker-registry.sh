#!/usr/bin/env bash
# ensure-docker-registry.sh makes sure Debian's distribution registry
# (package docker-registry, /usr/bin/docker-registry) is installed: the push
# tests start their own instances of it on 127.0.0.1 as an independent
# registry. No service is started here. Idempotent.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

if [ -x /usr/bin/docker-registry ]; then
	say "docker-registry is installed ($(/usr/bin/docker-registry --version 2>/dev/null | head -n1 || echo '?'))"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	die "Debian's docker-registry (the distribution registry) is not installed; the push tests need it. Install it, then run this again:
  on Debian/Ubuntu (as root): apt-get install docker-registry"
fi
candidate="$(apt-cache policy docker-registry 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
	say "refreshing package lists (apt-get update)"
	apt-get update -q
fi
say "installing docker-registry"
# policy-rc.d 101: the package must not start its own registry service on
# port 5000; the tests run theirs on free ports.
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry
[ -z "$created" ] || rm -f "$policy"
[ -x /usr/bin/docker-registry ] || die "docker-registry installed but /usr/bin/docker-registry is missing"
