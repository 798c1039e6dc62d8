package benchmark

import (
	"fmt"
	"io"
	"time"
)

// WriteDense prints the dense table in Markdown, each engine row compared
// with the raw ONNX Runtime row of the same thread count before it.
func WriteDense(w io.Writer, rows []Throughput) {
	fmt.Fprintln(w, "| num_threads | measured | texts/s | tokens/s | padding ratio | engine / raw ORT |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|")
	var raw Throughput
	for _, r := range rows {
		ratio := ""
		if r.Name == "raw ONNX Runtime" {
			raw = r
		} else if raw.Threads == r.Threads && raw.Elapsed > 0 {
			ratio = fmt.Sprintf("%.2f", r.TokensPerSecond()/raw.TokensPerSecond())
		}
		fmt.Fprintf(w, "| %d | %s | %.1f | %.0f | %.3f | %s |\n", r.Threads, r.Name, r.InputsPerSecond(), r.TokensPerSecond(), r.PaddingRatio(), ratio)
	}
}

// WriteSparse prints the sparse table in Markdown.
func WriteSparse(w io.Writer, rows []Throughput) {
	fmt.Fprintln(w, "| precision | allocations × num_threads | documents/s | documents/s per core | per core / Elasticsearch's per vCPU |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|")
	for _, r := range rows {
		perCore := r.InputsPerSecond() / float64(r.Allocations*r.Threads)
		fmt.Fprintf(w, "| %s | %d × %d | %.2f | %.2f | %.1f× |\n", r.Name, r.Allocations, r.Threads, r.InputsPerSecond(), perCore,
			perCore/esELSERDocsPerVCPU)
	}
}

// Memory is one memory probe's result.
type Memory struct {
	Allocations int
	Sessions    int
	PeakBytes   int64
}

// WriteMemory prints the memory table in Markdown.
func WriteMemory(w io.Writer, rows []Memory) {
	fmt.Fprintln(w, "| allocations | ONNX Runtime sessions | peak RSS (MiB) |")
	fmt.Fprintln(w, "|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %d | %d | %.0f |\n", r.Allocations, r.Sessions, float64(r.PeakBytes)/(1<<20))
	}
}

// WritePipeline prints the pipeline table in Markdown, each NATS row
// compared with the engine row of the same thread count before it.
func WritePipeline(w io.Writer, rows []Throughput) {
	fmt.Fprintln(w, "| num_threads | measured | documents | documents/s | pipeline / engine |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|")
	var engine Throughput
	for _, r := range rows {
		ratio := ""
		if r.Name == PipelineEngine {
			engine = r
		} else if engine.Threads == r.Threads && engine.Elapsed > 0 {
			ratio = fmt.Sprintf("%.2f", r.InputsPerSecond()/engine.InputsPerSecond())
		}
		fmt.Fprintf(w, "| %d | %s | %d | %.1f | %s |\n", r.Threads, r.Name, r.Inputs, r.InputsPerSecond(), ratio)
	}
}

// WriteOverhead prints the HTTP overhead table in Markdown: the engine
// alone, a NATS request and POST _inference on the same short input, and
// what each path adds to the engine's median.
func WriteOverhead(w io.Writer, r LatencyResult) {
	fmt.Fprintln(w, "| num_threads | measured | requests | p50 (ms) | p99 (ms) | p50 added (ms) |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | engine alone (pipeline.Infer) | %d | %s | %s |  |\n", r.Threads, len(r.Engine), ms(r.Engine.P50()), ms(r.Engine.P99()))
	fmt.Fprintf(w, "| %d | NATS request/reply (wire.Client) | %d | %s | %s | %s |\n", r.Threads, len(r.NATS), ms(r.NATS.P50()), ms(r.NATS.P99()), ms(r.NATS.P50()-r.Engine.P50()))
	fmt.Fprintf(w, "| %d | POST _inference (HTTP, then NATS) | %d | %s | %s | %s |\n", r.Threads, len(r.HTTP), ms(r.HTTP.P50()), ms(r.HTTP.P99()), ms(r.HTTP.P50()-r.Engine.P50()))
}

// WriteSearchUnderBulk prints the search latency table in Markdown: idle,
// then beside a bulk ingest, with the p99 ratio of the two.
func WriteSearchUnderBulk(w io.Writer, r LatencyResult) {
	fmt.Fprintln(w, "| endpoint | searches | p50 (ms) | p99 (ms) | p99 / idle p99 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| idle | %d | %s | %s |  |\n", len(r.Idle), ms(r.Idle.P50()), ms(r.Idle.P99()))
	ratio := ""
	if r.Idle.P99() > 0 {
		ratio = fmt.Sprintf("%.2f", float64(r.Bulk.P99())/float64(r.Idle.P99()))
	}
	fmt.Fprintf(w, "| bulk ingest running | %d | %s | %s | %s |\n", len(r.Bulk), ms(r.Bulk.P50()), ms(r.Bulk.P99()), ratio)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
