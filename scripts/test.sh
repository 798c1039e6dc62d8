#!/usr/bin/env bash
# The test command: installs what the tests need (Go modules, the ONNX
# Runtime library, staticcheck), then runs go vet, staticcheck and every
# test, fuzz seed corpora included, with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

go mod download
ONNXRUNTIME_LIB=$(./scripts/install-ort.sh)
export ONNXRUNTIME_LIB
go vet ./...
# Pinned; go run fetches and builds it once, then uses the build cache.
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 30m ./...
