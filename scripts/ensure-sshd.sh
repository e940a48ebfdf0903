#!/usr/bin/env bash
# ensure-sshd.sh makes sure OpenSSH's server and client are installed: the
# tests of ssh:// Docker hosts start their own sshd on 127.0.0.1 (no service
# is started here). Idempotent.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin"

if command -v sshd >/dev/null 2>&1 && command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
	say "openssh is installed ($(ssh -V 2>&1))"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	die "OpenSSH is not installed; the ssh:// host tests need it. Install it, then run this again:
  on Debian/Ubuntu (as root): apt-get install openssh-server openssh-client"
fi
candidate="$(apt-cache policy openssh-server 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
	say "refreshing package lists (apt-get update)"
	apt-get update -q
fi
say "installing openssh-server and openssh-client"
# policy-rc.d 101: do not start the ssh service; the tests run their own sshd.
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server openssh-client
[ -z "$created" ] || rm -f "$policy"
command -v sshd >/dev/null 2>&1 || die "openssh-server installed but sshd is not on PATH ($PATH)"
