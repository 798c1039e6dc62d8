#!/usr/bin/env bash
# The test command: installs what the tests need (Go modules, the ONNX
# Runtime library), then runs every test, fuzz seed corpora included, with
# the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

go mod download
ONNXRUNTIME_LIB=$(./scripts/install-ort.sh)
export ONNXRUNTIME_LIB
go vet ./...
go test -race -count=1 -timeout 15m ./...
