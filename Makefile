# agentauth — see README.md. Every target works on a fresh clone; `.ci/run` installs the system packages.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# A fixed number of inputs per target rather than a duration: with a duration, Go's fuzzer sometimes reports
# "context deadline exceeded" as a failure when the time runs out mid-step, with no failing input.
FUZZTIME ?= 20000x

.PHONY: all build image kube-apiserver test test-k8s test-adversarial vet bench bench-micro bench-pair bench-rotation bench-idle bench-replicas demo generate lint interop fuzz-short release test-release clean dev-credentials

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

# OCI images of the sidecar and the controller, without a container daemon (internal/tools/imagebuild, with
# go-containerregistry): each a static binary on an empty base, user 65532:65532, no shell. Written to
# $(BIN)/images/NAME/ (OCI layout) and $(BIN)/images/NAME.tar (`docker load`, `kind load image-archive`), tagged
# $(IMAGE_REPOSITORY)/NAME:<the chart's appVersion>. Reproducible: the same commit gives the same digests (files dated
# SOURCE_DATE_EPOCH, default the last commit's time). IMAGE_ARCH=arm64 for another architecture.
CHART := charts/agentauth
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' $(CHART)/Chart.yaml)
IMAGE_REPOSITORY ?= agentauth
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
IMAGE_CA_CERTIFICATES ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

image:
	@test -n "$(APP_VERSION)" || { echo "no appVersion in $(CHART)/Chart.yaml"; exit 1; }
	@mkdir -p $(BIN)/image/linux_$(IMAGE_ARCH)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -buildvcs=auto -o $(BIN)/image/linux_$(IMAGE_ARCH)/ ./cmd/sidecar ./cmd/controller
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./internal/tools/imagebuild -out $(BIN)/images \
	  -repository $(IMAGE_REPOSITORY) -version $(APP_VERSION) -revision $(REVISION) -platform linux/$(IMAGE_ARCH) \
	  $(if $(IMAGE_CA_CERTIFICATES),-ca-certificates $(IMAGE_CA_CERTIFICATES)) \
	  -binary $(BIN)/image/linux_$(IMAGE_ARCH)/controller -binary $(BIN)/image/linux_$(IMAGE_ARCH)/sidecar

# Also vets the suites behind build tags (the benchmark, the interop checks, the adversarial suite), which `make test` does not build.
vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags bench,interop,release,adversarial ./test/...

# The README's test command: static checks, then every test with the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# kube-apiserver for the suites that run a real Kubernetes API server (internal/kubetest): built once from the
# k8s.io/kubernetes module into a cache folder keyed by the version (about 25 minutes on 2 cores), reused after.
kube-apiserver:
	test/k8s/kube-apiserver.sh

# Only the suites against a real API server (also part of `make test`); they need `make kube-apiserver` and etcd
# (Debian's etcd-server), and skip without them unless CI is set.
test-k8s:
	$(GO) test -race -count=1 -timeout 10m ./internal/kubetest/... ./test/k8s/... ./pkg/issuer/k8sattest/... ./pkg/store/kubestore/... ./pkg/leader/...

# Hostile clients against the real binaries on loopback (test/adversarial): connection floods on every listener
# of the controller and the sidecars, and data-plane abuse of an httpsig ingress (slow bodies, unauthenticated and
# over-budget 8 MiB bodies, GET *, malformed chunked), with bounded counts; about two minutes, most of it building.
test-adversarial:
	$(GO) test -tags adversarial -count=1 -timeout 10m ./test/adversarial/...

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
	$(GO) run ./cmd/agentauthctl dev-credentials --dir $(DIR) --trust-domain $(TRUST_DOMAIN) $(foreach id,$(IDS),--id $(id))

# A short run of every fuzz target; `make fuzz-short FUZZTIME=5m` (or 1000000x) for a longer one.
fuzz-short:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The benchmarks: package micro-benchmarks (each beside the raw-signature baseline of the same algorithm, as a paired
# ratio x-raw), then the sidecar-pair benchmark (issues 4 and 19): every proof mode against a direct call and bare
# httputil.ReverseProxy pairs, interleaved in ABBA order over -rounds (4), each measurement with a core-speed probe
# (repeated when the probe is more than 15% off the median): latency at 1,000 req/s and at half the row's capacity,
# max throughput, CPU and allocation per request, as tables of speed-corrected ratios with their spread. Linux
# (/proc, taskset), ~8 minutes. Options via BENCHFLAGS, e.g. BENCHFLAGS='-rounds 2 -load.duration 1s -strict'.
bench: bench-micro bench-pair

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x -count 1 ./pkg/...

bench-pair:
	$(GO) test -tags bench -run '^TestSidecarPair$$' -count=1 -v -timeout 45m ./test/bench $(BENCHFLAGS)

# What connection retirement costs: the mtls pair with SVIDs rotated every 10s against the same pair without
# rotation, in one run (~6 minutes at the defaults; BENCHFLAGS='-rounds 1 -rotation.duration 25s' is quicker).
bench-rotation:
	$(GO) test -tags bench -run '^TestSidecarPairRotation$$' -count=1 -v -timeout 30m ./test/bench $(BENCHFLAGS)

# Idle sidecars' resident memory (issue 19: under 20 MB), file-backed and anonymous: the demo's pair after its calls,
# and a fresh egress+ingress pair (~2 minutes, most of it building). BENCHFLAGS='-idle.wait 1m -strict' waits longer
# and fails above 20 MB.
bench-idle:
	$(GO) test -tags bench -run '^TestSidecarIdleMemory$$' -count=1 -v -timeout 15m ./test/bench $(BENCHFLAGS)

# SET to enforced across controller replicas (issue 17): an account-disabled SET pushed to the replica the sidecars
# are connected to (replicas=1) and to the other one (replicas=2), p50 and p99 over REPLICA_SETS SETs each, against
# the real kube-apiserver of test/k8s (make kube-apiserver).
REPLICA_SETS ?= 200
bench-replicas:
	$(GO) test -tags bench -run '^$$' -bench '^BenchmarkSETToEnforced$$' -benchtime $(REPLICA_SETS)x -count 1 -timeout 30m ./test/k8s $(BENCHFLAGS)

# DEMOFLAGS=-keep keeps it running until Ctrl-C and prints agentauthctl commands to try on it.
demo: build
	@CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./examples/sampletool ./examples/sampleagent
	$(GO) run ./examples/demo -bin $(BIN) $(DEMOFLAGS)

# Regenerates api/**/*.pb.go with pinned buf v1.75.0, protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.6.2 (no system protoc).
generate:
	./api/generate.sh

# A release in $(DIST): static binaries of every cmd for each of $(RELEASE_PLATFORMS) in $(DIST)/<os>_<arch>/,
# the LICENSE, a CycloneDX SBOM per binary of the modules it links (cyclonedx-gomod app, pinned, run through the Go
# module proxy; `mod` mode missed modules whose shortest import path runs through a test), and SHA256SUMS over all of them (check with `cd dist && sha256sum -c SHA256SUMS`). Each binary's -version
# reads the module version, VCS revision and Go version from the build info: release from a tagged git checkout.
DIST ?= dist
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
CYCLONEDX_GOMOD := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0

release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  echo "build $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=auto -o $(DIST)/$${os}_$$arch/ ./cmd/...; \
	done
	cp LICENSE $(DIST)/
	@set -e; for c in cmd/*/; do n=$$(basename $$c); \
	  $(GO) run $(CYCLONEDX_GOMOD) app -json -output $(DIST)/$$n.cdx.json -main cmd/$$n .; \
	done
	cd $(DIST) && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS

# Builds a release into a temporary directory and checks it: checksums, static binaries of the right
# architecture, build info, and the SBOM against go.mod. Slow (two cross-builds and the SBOM tool); .ci/run runs it.
test-release:
	$(GO) test -tags release -count=1 -timeout 45m ./test/release

clean:
	rm -rf $(BIN) $(DIST)
