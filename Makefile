# phigate — see README.md. The two commands a newcomer runs: `make demo`, `make test`.
SHELL := /usr/bin/env bash
GO ?= go
BIN := bin/phigate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/phigate/phigate/node/cli.Version=$(VERSION)
PKGS := ./...
FUZZTIME ?= 20s
# Debian packages the tests and benchmarks drive: a real PostgreSQL 15 server
# and its clients (psql, pgbench), and PgBouncer (the benchmark's peer; the
# bench end-to-end test covers its leg too).
TEST_DEBS := postgresql-15 postgresql-client-15 pgbouncer
BENCH_DEBS := $(TEST_DEBS)
# MinIO, the S3 server the storage tests run against: built once from source
# into a cache outside the repository (it is AGPL: run, never imported).
# internal/miniotest.Version must name the same release.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
PHIGATE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/phigate
MINIO_BIN := $(PHIGATE_CACHE)/minio-$(MINIO_VERSION)/minio
export PHIGATE_MINIO := $(MINIO_BIN)

.PHONY: all build bench-build test test-race test-clients vet demo bench bench-ci fuzz deps minio bench-deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./node/cmd/phigate

# bench-build builds bin/phigate-bench, the benchmark-only build whose
# PHIGATE_BENCH_STAGE switches parts of the data path off for
# bench/decompose (session/benchstage); never a product binary.
bench-build:
	$(GO) build -tags phigate_bench -ldflags "$(LDFLAGS)" -o bin/phigate-bench ./node/cmd/phigate

# deps installs the Debian packages the tests need, when they are missing.
deps:
	@./.ci/install-debs.sh $(TEST_DEBS)

# minio builds the MinIO server the tests start, unless it is built already.
minio: $(MINIO_BIN)

$(MINIO_BIN):
	@GO=$(GO) ./.ci/build-minio.sh $(MINIO_VERSION) $(dir $@)

bench-deps:
	@./.ci/install-debs.sh $(BENCH_DEBS)

vet:
	$(GO) vet $(PKGS)

# test runs every test, then the concurrent core again under the race
# detector (test-race).
test: deps minio build vet
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory test-race

# test-race runs the concurrent core (proxy, spool, recording, cluster
# membership) under the race detector.
test-race: deps minio
	$(GO) test -count=1 -race -timeout 20m ./session/... ./storage/... ./replay/... ./cluster/...

# test-clients runs pgx's and lib/pq's own test suites twice, directly
# against PostgreSQL and through a phigate node, and fails if a test that
# passes directly does not pass through phigate, unless
# internal/clientsuite/expected-differences.txt says why it differs on
# purpose. The summary goes to internal/clientsuite/results/summary.txt.
# CLIENTSUITE_FLAGS adds flags: --strict (fail on stale entries), --keep,
# --suites pgx, -run ..., -v (go run ./internal/clientsuite -h lists them).
CLIENTSUITE_FLAGS ?=
test-clients: deps build
	$(GO) run ./internal/clientsuite --phigate $(BIN) --results internal/clientsuite/results $(CLIENTSUITE_FLAGS)

demo: deps build
	$(GO) run ./examples/demo --phigate $(BIN)

# MASK_CORPORA are labelled corpora (JSON Lines, as ../shared/eval/score_mask.py
# reads) that bench/mask scores both detection modes on; the development
# half of the deid nursing notes when it is beside the project.
MASK_CORPORA ?= $(wildcard ../shared/corpora/deid-dev.jsonl)

bench: bench-deps build bench-build minio
	$(GO) run ./bench/pg --phigate $(CURDIR)/$(BIN) --results bench/results
	$(GO) run ./bench/decompose --phigate $(CURDIR)/$(BIN) --phigate-bench $(CURDIR)/bin/phigate-bench --results bench/results
	$(GO) run ./bench/mask --results bench/results $(addprefix --corpus ,$(MASK_CORPORA))
	$(GO) run ./bench/cluster --phigate $(CURDIR)/$(BIN) --results bench/results
	$(GO) run ./bench/recording --phigate $(CURDIR)/$(BIN) --results bench/results
	$(GO) run ./bench/approval --results bench/results
	$(GO) run ./bench/sessions --phigate $(CURDIR)/$(BIN) --results bench/results

# bench-ci is the short side-by-side benchmark CI runs (about 5 minutes on
# two cores): bench/pg -rounds BENCH_CI_ROUNDS, each round on a fresh
# PostgreSQL, PgBouncer and phigate, into bench/results/ci/round-N, then
# bench/gate, which fails only when a ratio of phigate to a peer from the
# same run (throughput to PgBouncer's, p50 to direct's; median over the
# rounds that have it) leaves the band in bench/gate/baseline.json, or when
# fewer than 2 rounds have a figure; never on an absolute time. A round
# that lost a figure (its FAILED lines say why) is left out of that
# figure's median, and the gate's report names the rounds used: so
# BENCH_CI_ROUNDS is at least 2. The limits were measured with these
# flags: change them and the baseline together.
BENCH_CI_ROUNDS ?= 3
BENCH_CI_FLAGS := -clients 16 -modes simple,prepared -workloads select-only,read-write \
	-duration 5s -warmup 2s -scale 5 -stream ""
bench-ci: bench-deps build
	@rm -rf bench/results/ci
	@$(GO) run ./bench/pg --phigate $(CURDIR)/$(BIN) --results bench/results/ci -rounds $(BENCH_CI_ROUNDS) $(BENCH_CI_FLAGS) || \
	  echo "bench-ci: bench/pg reported failures (FAILED above); bench/gate judges the figures the rounds hold"
	$(GO) run ./bench/gate --baseline bench/gate/baseline.json --out bench/results/ci/gate.json -min-rounds 2 \
	  $$(for i in $$(seq 1 $(BENCH_CI_ROUNDS)); do echo bench/results/ci/round-$$i; done)

# fuzz runs every fuzz target for FUZZTIME each (crashers land in testdata/fuzz).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin
