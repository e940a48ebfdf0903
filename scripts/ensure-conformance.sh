#!/usr/bin/env bash
# ensure-conformance.sh builds the OCI distribution-spec conformance suite
# into bin/oci-conformance, from its Go module at a pinned version, for the
# embedded registry's conformance test (internal/registry). Idempotent: a
# binary already built from the pinned version is kept.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

MODULE=github.com/opencontainers/distribution-spec/conformance
VERSION=v0.0.0-20260831232431-97274622c111

cd "$(dirname "$0")/.."
mkdir -p bin
OUT="$PWD/bin/oci-conformance"
STAMP="$OUT.version"
if [ -x "$OUT" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ]; then
	say "oci-conformance $VERSION is built (bin/oci-conformance)"
	exit 0
fi
command -v go >/dev/null 2>&1 || die "go is not on PATH; run scripts/ensure-go.sh first"
say "downloading $MODULE@$VERSION"
# GOFLAGS and GOWORK from the caller would apply to this foreign module.
dir="$(env GOFLAGS= GOWORK=off go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $MODULE@$VERSION gave no directory; is the Go module proxy reachable?"
say "building oci-conformance in $dir"
# The suite is a main package: go build inside its own module, with its own
# go.mod and go.sum, so gantry's dependency graph does not touch it.
(cd "$dir" && env GOFLAGS= GOWORK=off CGO_ENABLED=0 go build -o "$OUT" .)
printf '%s\n' "$VERSION" >"$STAMP"
say "built bin/oci-conformance ($VERSION)"
