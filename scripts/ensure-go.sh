#!/usr/bin/env bash
# ensure-go.sh checks that Go >= 1.26 is on PATH (looking in /usr/local/go/bin too).
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

NEED_MAJOR=1
NEED_MINOR=26

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	die "go is installed at /usr/local/go/bin but not on PATH; run:
  export PATH=/usr/local/go/bin:\$PATH"
fi
command -v go >/dev/null 2>&1 || die "go is not installed. gantry needs Go >= ${NEED_MAJOR}.${NEED_MINOR}:
  install it from https://go.dev/dl/ into /usr/local/go, then: export PATH=/usr/local/go/bin:\$PATH"

# `go env GOVERSION` prints e.g. go1.26.8 (or go1.27rc1).
ver="$(go env GOVERSION 2>/dev/null || true)"
ver="${ver#go}"
major="$(printf '%s' "$ver" | sed -E 's/^([0-9]+).*/\1/')"
minor="$(printf '%s' "$ver" | sed -E 's/^[0-9]+\.([0-9]+).*/\1/')"
case "$major$minor" in
*[!0-9]* | '') die "cannot read the Go version from 'go env GOVERSION' (got '$ver')" ;;
esac
if [ "$major" -lt "$NEED_MAJOR" ] || { [ "$major" -eq "$NEED_MAJOR" ] && [ "$minor" -lt "$NEED_MINOR" ]; }; then
	die "go $ver at $(command -v go) is too old; gantry needs Go >= ${NEED_MAJOR}.${NEED_MINOR}.
  install a newer one into /usr/local/go and put /usr/local/go/bin first on PATH"
fi
say "go $ver ($(command -v go))"
