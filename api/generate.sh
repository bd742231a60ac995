#!/usr/bin/env bash
# Regenerates the Go code for api/**/*.proto with pinned tools; no system protoc needed.
# buf compiles the .proto files itself; protoc-gen-go is built from the pinned module into a temporary directory.
set -euo pipefail
cd "$(dirname "$0")"

BUF_VERSION=v1.75.0
PROTOBUF_GO_VERSION=v1.36.12

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

GOBIN="$tmp" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOBUF_GO_VERSION}"
PATH="$tmp:$PATH" go run "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}" generate
