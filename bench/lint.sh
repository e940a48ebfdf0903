#!/usr/bin/env bash
# bench/lint.sh: gantry lint throughput over a generated corpus of
# Dockerfiles and compose files (files per second), and the time to lint a
# typical repository (examples/: three gantry projects and a Dockerfile).
# Goal: examples/ in under 100 ms, process start included.
# When hadolint is on PATH, it lints the same Dockerfiles side by side.
#
# Environment: GANTRY (default bin/gantry), BENCH_LINT_FILES (default 300:
# half Dockerfiles, half compose projects), BENCH_ROUNDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
GANTRY="${GANTRY:-$PWD/bin/gantry}"
FILES="${BENCH_LINT_FILES:-300}"
ROUNDS="${BENCH_ROUNDS:-5}"

work="$(mktemp -d)"
trap '[ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT
corpus="$work/corpus"
mkdir -p "$corpus"

# A mix of what real repositories hold: single- and multi-stage builds,
# heredocs, continuations, parser directives, package installs, good and bad
# compose files with several services.
echo "bench: generating $FILES Dockerfiles and compose files in $corpus"
for ((i = 0; i < FILES / 2; i++)); do
	d="$corpus/svc$i"
	mkdir -p "$d"
	case $((i % 4)) in
	0) cat >"$d/Dockerfile" <<-EOF
		# syntax=docker/dockerfile:1
		ARG GO_VERSION=1.23
		FROM golang:\${GO_VERSION} AS build
		WORKDIR /src
		COPY go.mod go.sum ./
		RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
		COPY . .
		RUN CGO_ENABLED=0 go build -o /out/app$i ./cmd/app
		FROM gcr.io/distroless/static-debian12:nonroot
		COPY --from=build /out/app$i /app
		USER 65532:65532
		HEALTHCHECK --interval=10s CMD ["/app", "check"]
		ENTRYPOINT ["/app"]
		EOF
		;;
	1) cat >"$d/Dockerfile" <<-EOF
		FROM python:3.12-slim
		ENV PYTHONDONTWRITEBYTECODE=1 \\
		    APP_SECRET_KEY=change-me-$i
		RUN apt-get update \\
		 && apt-get install -y --no-install-recommends gcc libpq-dev \\
		 && rm -rf /var/lib/apt/lists/*
		COPY requirements.txt .
		RUN pip install -r requirements.txt
		COPY . /app
		CMD ["gunicorn", "app:app"]
		EOF
		;;
	2) cat >"$d/Dockerfile" <<-EOF
		FROM node:latest AS deps
		ARG NPM_TOKEN
		RUN <<SCRIPT
		set -e
		apk add curl git
		npm ci
		SCRIPT
		FROM node:22-alpine
		RUN apk add --no-cache tini
		COPY --from=deps /node_modules /app/node_modules
		ADD https://example.com/tool$i.tar.gz /opt/
		USER node
		HEALTHCHECK CMD ["node", "check.js"]
		EOF
		;;
	3) printf '# escape=`\nFROM debian:12-slim\nRUN apt-get update `\n    && apt-get install -y make `\n    && rm -rf /var/lib/apt/lists/*\nUSER 10001\n' >"$d/Dockerfile" ;;
	esac
	cat >"$d/compose.yaml" <<-EOF
	services:
	  web:
	    image: acme/web$i:1.$i.0
	    build: .
	    ports: ["127.0.0.1:$((20000 + i)):8080"]
	    read_only: true
	    healthcheck: { test: ["CMD", "/app", "check"] }
	    environment:
	      APP_ENV: production
	      DB_PASSWORD_FILE: /run/secrets/db
	  api:
	    image: acme/api$i:latest
	    ports: ["$((30000 + i)):9090"]
	    environment:
	      - DB_PASSWORD=\${DB_PASSWORD:-hunter2}
	    volumes:
	      - /var/run/docker.sock:/var/run/docker.sock
	  db:
	    image: postgres:16
	    healthcheck: { disable: true }
	EOF
done
count=$(find "$corpus" -type f | wc -l)

now_ms() { date +%s%3N; }
best_of() { # command...: the best of ROUNDS runs, in ms; exit 1 (findings) is expected
	local best=0 t0 t1 d rc
	for ((r = 0; r < ROUNDS; r++)); do
		t0=$(now_ms)
		rc=0
		"$@" >/dev/null 2>&1 || rc=$?
		t1=$(now_ms)
		if ((rc > 1)); then echo "bench: $* failed with exit $rc" >&2; "$@" >&2 || true; return 1; fi
		d=$((t1 - t0))
		if ((best == 0 || d < best)); then best=$d; fi
	done
	echo "$best"
}

findings=$("$GANTRY" lint --format json "$corpus" 2>/dev/null | grep -c '"rule":' || true)
corpus_ms=$(best_of "$GANTRY" lint --format json "$corpus")
((corpus_ms > 0)) || corpus_ms=1
echo "bench: gantry lint: $count files ($findings findings) in ${corpus_ms} ms: $((count * 1000 / corpus_ms)) files/s"

if command -v hadolint >/dev/null 2>&1; then
	mapfile -t dockerfiles < <(find "$corpus" -name Dockerfile)
	had_ms=$(best_of hadolint --no-fail "${dockerfiles[@]}")
	gl_ms=$(best_of "$GANTRY" lint "${dockerfiles[@]}")
	echo "bench: ${#dockerfiles[@]} Dockerfiles: gantry lint ${gl_ms} ms, hadolint ${had_ms} ms (ratio $(awk "BEGIN{printf \"%.2f\", $gl_ms/($had_ms>0?$had_ms:1)}"))"
else
	echo "bench: hadolint is not installed here (Debian does not package it); no side-by-side run"
fi

examples_ms=$(best_of "$GANTRY" lint examples)
verdict="met"
((examples_ms < 100)) || verdict="NOT met"
echo "bench: gantry lint examples/ (a typical repository): ${examples_ms} ms; goal < 100 ms: $verdict"
