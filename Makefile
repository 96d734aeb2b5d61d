# launchready — the two commands a newcomer needs: `make demo` and `make test`.
# Both bring the local stack up first (scripts/stack.sh installs what is missing).

SHELL := /bin/bash
GO ?= go
STACK := scripts/stack.sh
ENV := set -a && source .stack/env && set +a
PKGS := ./...
TEST_TIMEOUT ?= 45m
FUZZTIME ?= 10s

.PHONY: all build stack-up stack-down stack-status stack-reset migrate test unit fuzz bench demo vet acceptance

all: build

build:
	$(GO) build -o bin/launchready ./cmd/launchready

stack-up:
	@$(STACK) up

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

stack-reset:
	@$(STACK) reset

migrate: build stack-up
	@$(ENV) && bin/launchready migrate

vet:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Unit tests only: no services needed.
unit:
	$(GO) test -short -race -shuffle=on -count=1 $(PKGS)

# Everything: unit, integration and end-to-end tests on the real stack, then
# a short run of every fuzz target.
test: stack-up vet
	@scripts/tools.sh
	@$(ENV) && $(GO) test -race -shuffle=on -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz:
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Benchmarks print figures (throughput, latency percentiles) on the real stack.
bench: stack-up build
	@$(ENV) && $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m $(PKGS) | tee bench.out | grep -E '^(Benchmark|ok|FAIL|---)|/s|p9'

demo: stack-up build migrate
	@scripts/demo.sh

# The 50-user acceptance run of the end-to-end suite, with its figures.
acceptance: stack-up
	@$(ENV) && $(GO) test -count=1 -v -run 'TestAcceptance50Users' ./e2e/ | grep -E 'acceptance:|^(--- |ok|FAIL)'
