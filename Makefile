# agentauth — see README.md. Every target works on a fresh clone; `.ci/run` installs the system packages.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# A fixed number of inputs per target rather than a duration: with a duration, Go's fuzzer sometimes reports
# "context deadline exceeded" as a failure when the time runs out mid-step, with no failing input.
FUZZTIME ?= 20000x

.PHONY: all build test vet bench bench-micro bench-pair demo generate lint interop fuzz-short clean dev-credentials

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

# Also vets the suites behind build tags (the benchmark, the interop checks), which `make test` does not build.
vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags bench,interop ./test/...

# The README's test command: static checks, then every test with the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Interop with independent implementations (Node.js `jose`, `http-message-signatures`): ours verify theirs and
# theirs verify ours. Needs node and npm.
interop:
	cd test/interop && npm ci --no-audit --no-fund --silent
	$(GO) test -count=1 -tags interop ./test/interop/...

# Throwaway CA, X.509-SVIDs and WITs for local testing with the sidecar's identity.files source, e.g.
#   make dev-credentials DIR=/tmp/creds IDS="spiffe://example.org/agent/planner spiffe://example.org/tool/weather"
DIR ?= $(BIN)/dev-credentials
TRUST_DOMAIN ?= example.org
IDS ?= spiffe://example.org/agent/planner spiffe://example.org/tool/weather
dev-credentials:
	$(GO) run ./cmd/agentauthctl dev-credentials -dir $(DIR) -trust-domain $(TRUST_DOMAIN) $(foreach id,$(IDS),-id $(id))

# A short run of every fuzz target; `make fuzz-short FUZZTIME=5m` (or 1000000x) for a longer one.
fuzz-short:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The benchmarks: package micro-benchmarks (each beside the raw-signature baseline of the same algorithm), then the
# sidecar-pair benchmark (issue 4): latency at a fixed 1,000 req/s, max throughput and CPU per request of every proof
# mode against a direct call and bare httputil.ReverseProxy pairs, in one run, as a table with ratios. Linux (/proc,
# taskset), ~4 minutes. Options via BENCHFLAGS, e.g. BENCHFLAGS='-rounds 1 -strict'.
bench: bench-micro bench-pair

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x -count 1 ./pkg/...

bench-pair:
	$(GO) test -tags bench -run '^TestSidecarPair$$' -count=1 -v -timeout 20m ./test/bench $(BENCHFLAGS)

demo: build
	@CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./examples/sampletool ./examples/sampleagent
	$(GO) run ./examples/demo -bin $(BIN)

# Regenerates api/**/*.pb.go with pinned buf v1.75.0, protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.2 (no system protoc).
generate:
	./api/generate.sh

clean:
	rm -rf $(BIN)
