#!/usr/bin/env bash
# Regenerates the Go code for api/**/*.proto with pinned tools; no system protoc needed.
# buf compiles the .proto files itself; protoc-gen-go and protoc-gen-go-grpc are built from the pinned modules into a
# temporary directory.
set -euo pipefail
cd "$(dirname "$0")"

BUF_VERSION=v1.75.0
PROTOBUF_GO_VERSION=v1.36.12
# v1.6.x emits code needing grpc.SupportPackageIsVersion9 (grpc >= v1.64); go.mod has grpc v1.85.0.
GRPC_GO_VERSION=v1.6.2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

GOBIN="$tmp" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOBUF_GO_VERSION}"
GOBIN="$tmp" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${GRPC_GO_VERSION}"
PATH="$tmp:$PATH" go run "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}" generate
