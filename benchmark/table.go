package benchmark

import (
	"fmt"
	"io"
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
	fmt.Fprintln(w, "| allocations × num_threads | documents/s | documents/s per core |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, r := range rows {
		cores := float64(r.Allocations * r.Threads)
		fmt.Fprintf(w, "| %d × %d | %.2f | %.2f |\n", r.Allocations, r.Threads, r.InputsPerSecond(), r.InputsPerSecond()/cores)
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
