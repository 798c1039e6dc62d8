#!/usr/bin/env bash
# The test command: installs what the tests need (Go modules, the ONNX
# Runtime library, the large tokenizer files, staticcheck), then runs go vet, staticcheck and every
# test, fuzz seed corpora included, with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

go mod download
ONNXRUNTIME_LIB=$(./scripts/install-ort.sh)
export ONNXRUNTIME_LIB
# The real tokenizer.json files of the tokenizer's golden tests (Qwen3, Gemma 3).
./scripts/install-tokenizers.sh >/dev/null
go vet ./...
# Pinned; go run fetches and builds it once, then uses the build cache.
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 30m ./...
