# Outrigger: the two commands first.
#   make demo   start throwaway Postgres and Redis, run outrigger in front of them,
#               drive pgbench and redis-benchmark through it and print a summary
#   make test   vet, unit tests with -race, integration tests against real servers
#   make bench  Outrigger side by side with PgBouncer, twemproxy, HAProxy and a
#               direct connection; writes bench/results/ and BENCHMARKS.md

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/outrigger/outrigger/cmd/outrigger/cli.Version=$(VERSION) \
           -X github.com/outrigger/outrigger/cmd/outrigger/cli.Commit=$(COMMIT)

.PHONY: all build demo test deps vet unit integration fuzz-pg fuzz-redis bench bench-quick bench-loopgate bench-go clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/outrigger ./cmd/outrigger

deps:
	@scripts/deps.sh

demo: deps
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/outrigger-demo

# Every test once, with -race: unit tests and the integration tests that
# start real servers.
test: deps vet
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

# The unit tests alone (-short skips the tests that start real servers).
unit:
	$(GO) test -race -short -count=1 ./...

# The integration tests alone.
integration:
	$(GO) test -race -count=1 -timeout 15m ./integration/...

# The Postgres differential run for as long as PGDIFF_DURATION: generated
# extended-protocol conversations sent to Postgres directly and through
# Outrigger in every pool mode, replies compared byte for byte (make test
# runs a fixed 2000 of them). PGDIFF_SEED picks another sequence.
PGDIFF_DURATION ?= 30m
RDDIFF_DURATION ?= 30m
fuzz-redis: deps
	RDDIFF_DURATION=$(RDDIFF_DURATION) $(GO) test -count=1 -timeout 0 -run '^TestRedisDiff$$' -v ./integration/

fuzz-pg: deps
	PGDIFF_DURATION=$(PGDIFF_DURATION) $(GO) test -count=1 -timeout 0 -run '^TestPGDiff$$' -v ./integration/

# The side-by-side benchmark (bench/sidebyside; BENCHMARKS.md says how to
# read it). `make bench` is the full run (3 rounds, about 40 minutes);
# `make bench-quick` one round of short runs (about 3 minutes), for checking
# a change. PROFILE=<case> (a case id from the tables, such as pg-select-c64
# or redis-get-c50-p16) also captures Outrigger's CPU and allocation profiles
# during that case into bench/results/. BENCH_FLAGS passes more flags
# (go run ./bench/sidebyside -h lists them).
PROFILE ?=
BENCH_FLAGS ?=
BENCH_PROFILE = $(if $(PROFILE),-profile $(PROFILE))
BENCH_AS = $(if $(PROFILE), PROFILE=$(PROFILE))$(if $(BENCH_FLAGS), BENCH_FLAGS="$(BENCH_FLAGS)")

bench: build
	@scripts/deps.sh bench
	$(GO) run ./bench/sidebyside -outrigger bin/outrigger -invoked-as 'make bench$(BENCH_AS)' $(BENCH_PROFILE) $(BENCH_FLAGS)

bench-quick: build
	@scripts/deps.sh bench
	$(GO) run ./bench/sidebyside -quick -outrigger bin/outrigger -invoked-as 'make bench-quick$(BENCH_AS)' $(BENCH_PROFILE) $(BENCH_FLAGS)

# The event-loop gate: goroutine-per-client relay against gnet loops.
bench-loopgate:
	cd bench/loopgate && $(GO) build -o ../../bin/loopgate . && ../../bin/loopgate run

# Go micro-benchmarks (the relay, the classifier, the RESP reader).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
