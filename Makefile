# gantry's developer entry points. `make` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Go may live in /usr/local/go/bin without being on PATH; tools go to GOPATH/bin.
GOROOT_BIN := /usr/local/go/bin
export PATH := $(GOROOT_BIN):$(PATH)
GOPATH_DIR := $(shell PATH="$(PATH)" go env GOPATH 2>/dev/null)
GOBIN_DIR := $(if $(GOPATH_DIR),$(GOPATH_DIR)/bin,$(HOME)/go/bin)
export PATH := $(PATH):$(GOBIN_DIR)

GANTRY := $(CURDIR)/bin/gantry
STATICCHECK_VERSION := v0.8.2
TEST_LABEL := io.gantry.test=1

.PHONY: help build deps test demo bench lint clean

help: ## list the targets
	@echo "gantry make targets:"
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-7s %s\n", $$1, $$2}'

build: ## build bin/gantry
	go build -o bin/gantry ./cmd/gantry

deps: ## check Go >= 1.26, install and start Docker Engine, install OpenSSH (for ssh:// host tests), iproute2 for the test swarm, docker-registry, Prometheus and Alertmanager, build the OCI conformance suite and Trivy
	@bash scripts/ensure-go.sh
	@bash scripts/ensure-docker.sh
	@bash scripts/ensure-sshd.sh
	@bash scripts/ensure-swarm.sh
	@bash scripts/ensure-docker-registry.sh
	@bash scripts/ensure-prometheus.sh
	@bash scripts/ensure-conformance.sh
	@bash scripts/ensure-trivy.sh

test: deps ## go vet, then all tests (integration tests need Docker and run)
	go vet ./...
	@bash scripts/run-tests.sh

demo: deps build ## run the end-to-end demo (examples/demo.sh)
	GANTRY=$(GANTRY) bash examples/demo.sh

bench: deps build ## gantry deploy vs compose up --wait, push vs crane and docker push, version vs git log, scan gate vs trivy convert, proxy vs nginx, analysis rollback, health view cached vs not (BENCH_PARTS)
	GANTRY=$(GANTRY) bash bench/run.sh

lint: ## gofmt, go vet and staticcheck
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then \
		echo "lint: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	@if ! command -v staticcheck >/dev/null 2>&1 || \
		! staticcheck -version 2>/dev/null | grep -q '($(STATICCHECK_VERSION:v%=%))'; then \
		echo "lint: installing staticcheck $(STATICCHECK_VERSION) into $(GOBIN_DIR)"; \
		GOBIN="$(GOBIN_DIR)" go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); fi
	staticcheck ./...

clean: ## remove bin/ and Docker objects (containers, networks, volumes, images) labelled io.gantry.test=1
	rm -rf bin
	@if docker info >/dev/null 2>&1; then \
		ids="$$(docker ps -aq --filter label=$(TEST_LABEL))"; \
		if [ -n "$$ids" ]; then echo "clean: removing containers: $$(echo $$ids | wc -w)"; docker rm -f -v $$ids >/dev/null; fi; \
		ids="$$(docker network ls -q --filter label=$(TEST_LABEL))"; \
		if [ -n "$$ids" ]; then echo "clean: removing networks: $$(echo $$ids | wc -w)"; docker network rm $$ids >/dev/null; fi; \
		ids="$$(docker volume ls -q --filter label=$(TEST_LABEL))"; \
		if [ -n "$$ids" ]; then echo "clean: removing volumes: $$(echo $$ids | wc -w)"; docker volume rm -f $$ids >/dev/null; fi; \
		ids="$$(docker image ls -q --filter label=$(TEST_LABEL) | sort -u)"; \
		if [ -n "$$ids" ]; then echo "clean: removing test images (rebuilt when a test needs them): $$(echo $$ids | wc -w)"; \
			for pass in 1 2 3 4 5; do docker image rm -f $$ids >/dev/null 2>&1 && break; \
				ids="$$(docker image ls -q --filter label=$(TEST_LABEL) | sort -u)"; [ -n "$$ids" ] || break; done; fi; \
	else echo "clean: no docker engine answers; skipped docker objects"; fi
