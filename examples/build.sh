#!/usr/bin/env bash
# Build a gantry example image FROM scratch from the static Go binary in
# examples/app. No public registry is touched.
#
#   examples/build.sh VERSION MODE IMAGE_REF   build one image, print its ID
#   examples/build.sh --all                    build every image the demo and tests use
#
# MODE is healthy, unhealthy, crash or slow (see examples/app/main.go).
# Building the same inputs again gives the same image ID.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

# Build contexts live in one temp dir, removed on any exit (a RETURN trap
# would not run when a failing command ends the script inside build_one).
work="$(mktemp -d "${TMPDIR:-/tmp}/gantry-example.XXXXXX")"
trap 'rm -rf "$work"' EXIT

usage() {
	echo "usage: $0 VERSION MODE IMAGE_REF | $0 --all" >&2
	exit 2
}

build_one() {
	local version="$1" mode="$2" ref="$3" ctx
	case "$mode" in
	healthy | unhealthy | crash | slow) ;;
	*)
		echo "build.sh: unknown mode \"$mode\"; use healthy, unhealthy, crash or slow" >&2
		exit 2
		;;
	esac
	ctx="$(mktemp -d "$work/ctx.XXXXXX")"
	(
		cd "$root"
		CGO_ENABLED=0 GOOS=linux GOARCH="$(go env GOARCH)" \
			go build -trimpath -buildvcs=false \
			-ldflags "-s -w -X main.version=$version -X main.mode=$mode" \
			-o "$ctx/app" ./examples/app
	)
	mkdir "$ctx/data"
	# Fixed times keep the build cache, and so the image ID, stable across runs.
	touch -d '2000-01-01T00:00:00Z' "$ctx/app" "$ctx/data"
	# The classic builder: it needs no buildx plugin and nothing from a
	# registry for FROM scratch. Its chatter on stderr is shown only on failure.
	if ! DOCKER_BUILDKIT=0 docker build -q --label io.gantry.example=1 \
		-t "$ref" -f "$here/Dockerfile" "$ctx" 2>"$ctx/build.log"; then
		# Drop the CLI's legacy-builder notice and progress; keep the error.
		tr -d '\r' <"$ctx/build.log" | grep -v -e '^DEPRECATED' -e '^ \{4,\}' \
			-e '^Sending build context' -e '^$' >&2 || true
		echo "build.sh: docker build of $ref failed" >&2
		exit 1
	fi
}

case "${1:-}" in
--all)
	[ $# -eq 1 ] || usage
	build_one 1.0.0 healthy gantry-example/app:1.0.0
	build_one 1.1.0 healthy gantry-example/app:1.1.0
	build_one 2.0.0 unhealthy gantry-example/app:2.0.0-unhealthy
	build_one 2.0.0 crash gantry-example/app:2.0.0-crash
	;;
"" | -h | --help) usage ;;
*)
	[ $# -eq 3 ] || usage
	build_one "$1" "$2" "$3"
	;;
esac
