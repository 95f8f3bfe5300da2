# Outrigger: the two commands first.
#   make demo   start throwaway Postgres and Redis, run outrigger in front of them,
#               drive pgbench and redis-benchmark through it and print a summary
#   make test   vet, unit tests with -race, integration tests against real servers

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/outrigger/outrigger/cmd/outrigger/cli.Version=$(VERSION) \
           -X github.com/outrigger/outrigger/cmd/outrigger/cli.Commit=$(COMMIT)

.PHONY: all build demo test deps vet unit integration bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/outrigger ./cmd/outrigger

deps:
	@scripts/deps.sh

demo: deps
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/outrigger-demo

test: deps vet unit integration

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -short -count=1 ./...

# Everything again without -short: the tests that start real servers run too.
integration:
	$(GO) test -race -count=1 -timeout 15m ./...

bench: build
	@scripts/deps.sh bench
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
