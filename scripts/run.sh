#!/usr/bin/env bash
# The run command: installs the ONNX Runtime library if missing, builds
# jetinfer and serves on :9200 with an embedded nats-server whose data lives
# in ./data. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$(./scripts/install-ort.sh)}
export ONNXRUNTIME_LIB
mkdir -p bin
go build -o bin/jetinfer ./cmd/jetinfer
exec bin/jetinfer serve "$@"
