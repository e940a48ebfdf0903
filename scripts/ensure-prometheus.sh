#!/usr/bin/env bash
# ensure-prometheus.sh makes sure Debian's Prometheus and Alertmanager
# (packages prometheus and prometheus-alertmanager: /usr/bin/prometheus,
# promtool, prometheus-alertmanager, amtool) are installed. The analysis,
# alert and monitoring tests start their own instances on free 127.0.0.1
# ports; no service is started here (policy-rc.d keeps the packages from
# starting theirs on 9090 and 9093). Idempotent.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

have() { [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus-alertmanager ] && [ -x /usr/bin/amtool ]; }

if have; then
	say "prometheus is installed ($(/usr/bin/prometheus --version 2>&1 | head -n1)); alertmanager too ($(/usr/bin/prometheus-alertmanager --version 2>&1 | head -n1))"
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	die "Debian's prometheus and prometheus-alertmanager are not installed; the analysis, alert and monitoring tests need them. Install them, then run this again:
  on Debian/Ubuntu (as root): apt-get install prometheus prometheus-alertmanager"
fi
candidate="$(apt-cache policy prometheus-alertmanager 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
	say "refreshing package lists (apt-get update)"
	apt-get update -q
fi
say "installing prometheus and prometheus-alertmanager"
policy=/usr/sbin/policy-rc.d
created=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
fi
# The packages recommend node-exporter and others; only the two servers
# and their tools are needed.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager
[ -z "$created" ] || rm -f "$policy"
have || die "prometheus and prometheus-alertmanager installed, but one of /usr/bin/prometheus, promtool, prometheus-alertmanager, amtool is missing"
say "prometheus and alertmanager installed"
