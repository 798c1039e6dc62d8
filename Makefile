.PHONY: run test build bench-build fuzz bench scaling

# Run the service: HTTP API on :9200, embedded NATS, data in ./data.
run:
	./scripts/run.sh

# Run every test; installs what the tests need first.
test:
	./scripts/test.sh

build:
	go build -o bin/jetinfer ./cmd/jetinfer

bench-build:
	go build -o bin/jetinfer-bench ./cmd/jetinfer-bench

# Longer fuzzing than the seed corpora the tests run.
FUZZTIME ?= 60s
fuzz:
	go test -run='^$$' -fuzz=FuzzParsePut -fuzztime=$(FUZZTIME) ./config/
	go test -run='^$$' -fuzz=FuzzParseRequest -fuzztime=$(FUZZTIME) ./inferapi/
	go test -run='^$$' -fuzz=FuzzTokenize -fuzztime=$(FUZZTIME) ./inference/tokenizer/
	go test -run='^$$' -fuzz=FuzzHeads -fuzztime=$(FUZZTIME) ./inference/
	go test -run='^$$' -fuzz=FuzzSplit -fuzztime=$(FUZZTIME) ./pipeline/chunking/

# The engine benchmark tables of the README.
bench: bench-build
	ONNXRUNTIME_LIB=$$(./scripts/install-ort.sh) bin/jetinfer-bench

# The adaptive allocation demo: a table second by second and docs/scaling.png.
scaling: bench-build
	ONNXRUNTIME_LIB=$$(./scripts/install-ort.sh) bin/jetinfer-bench --only scaling
