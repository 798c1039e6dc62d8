// Package pipeline runs inference requests on a loaded model and writes
// what Elasticsearch answers: a POST _inference request (inferapi.Request)
// becomes its response body, and an ingest document is chunked
// (pipeline/chunking), its chunks embedded in engine batches and merged per
// result slot into a semantic_text-shaped result body. Runner ties a model
// to its endpoint for the serving side (package consumer).
package pipeline
