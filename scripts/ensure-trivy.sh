#!/usr/bin/env bash
# ensure-trivy.sh builds Trivy, the vulnerability scanner behind `gantry
# scan` and the release gate, into bin/trivy from its Go module at a pinned
# version (Trivy needs GOEXPERIMENT=jsonv2 to build). The scan tests run it
# offline against a small vulnerability database they create. Idempotent: a
# bin/trivy built from the pinned version (go version -m reads it from the
# binary) is kept; one of another version is replaced.
set -euo pipefail

say() { printf 'gantry-setup: %s\n' "$*"; }
die() { printf 'gantry-setup: %s\n' "$*" >&2; exit 1; }

MODULE=github.com/aquasecurity/trivy/cmd/trivy
VERSION=v0.74.0

cd "$(dirname "$0")/.."
mkdir -p bin
OUT="$PWD/bin/trivy"
command -v go >/dev/null 2>&1 || die "go is not on PATH; run scripts/ensure-go.sh first (Trivy is built from the Go module proxy)"
# The module version the binary was built from, as Go recorded it.
built() { { go version -m "$1" 2>/dev/null || true; } | awk '$1 == "mod" && $2 == "github.com/aquasecurity/trivy" { print $3 }'; }
# The scan tests build two small modules of their own (the vulnerability
# database writer and a binary linking a vulnerable module); fetch their
# dependencies now, so that the tests need no network.
for m in internal/scan/testdata/mkdb internal/scan/testdata/vulnapp; do
	(cd "$m" && env GOFLAGS= GOWORK=off go mod download) || die "go mod download in $m failed; is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
done
if [ -x "$OUT" ]; then
	have="$(built "$OUT")"
	if [ "$have" = "$VERSION" ]; then
		say "trivy $VERSION is built (bin/trivy)"
		exit 0
	fi
	say "bin/trivy was built from '${have:-an unknown version}'; replacing it with $VERSION"
fi

say "building trivy $VERSION: GOEXPERIMENT=jsonv2 go install $MODULE@$VERSION (several minutes on a small machine)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# GOFLAGS and GOWORK from the caller would apply to this foreign module; the
# binary goes to a temporary GOBIN first, so bin/trivy is never half-written.
# -X sets the version `trivy --version` prints (a plain go install says dev).
if ! env GOFLAGS= GOWORK=off GOEXPERIMENT=jsonv2 GOBIN="$tmp" go install \
	-ldflags "-X github.com/aquasecurity/trivy/pkg/version/app.ver=${VERSION#v}" "$MODULE@$VERSION" >"$tmp/build.log" 2>&1; then
	tail -n 25 "$tmp/build.log" >&2
	die "building trivy failed: GOEXPERIMENT=jsonv2 go install $MODULE@$VERSION (its last lines are above).
  Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))? Trivy $VERSION needs Go >= 1.26 (scripts/ensure-go.sh).
  Run that command yourself to see the whole output, then copy the binary to $OUT."
fi
[ -x "$tmp/trivy" ] || die "go install $MODULE@$VERSION succeeded but left no trivy binary in $tmp"
got="$("$tmp/trivy" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1 || true)"
[ "$got" = "${VERSION#v}" ] || die "the trivy built from $MODULE@$VERSION reports version '${got:-unknown}', not ${VERSION#v}"
[ "$(built "$tmp/trivy")" = "$VERSION" ] || die "go version -m does not show $MODULE $VERSION in the binary just built"
mv -f "$tmp/trivy" "$OUT"
say "built bin/trivy ($VERSION)"
