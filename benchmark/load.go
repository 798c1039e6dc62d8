package benchmark

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/inference"
)

// LoadResult is how long one model takes to load: without the graph cache
// (ONNX Runtime optimizes the graph each time), with it when the graph
// is made and saved, and with it when the saved graph is read.
type LoadResult struct {
	Name                  string
	Uncached, First, Warm time.Duration
}

// loadRuns is how many loads each median is taken over.
const loadRuns = 3

// Load measures the graph cache on the dense (MiniLM-L12 sized) and sparse
// (BERT-base sized) models: median load times, each load closed before
// the next.
func Load(ctx context.Context, cfg Config) ([]LoadResult, error) {
	cfg = cfg.withDefaults()
	dense, err := denseDir(cfg)
	if err != nil {
		return nil, err
	}
	sparse, err := modelDir(cfg, sparseName, sparseSynth, sparseConfig)
	if err != nil {
		return nil, err
	}
	var out []LoadResult
	for _, m := range []struct{ name, dir string }{{"dense (MiniLM-L12)", dense}, {"sparse (BERT-base)", sparse}} {
		cache, err := os.MkdirTemp("", "jetinfer-graphs-")
		if err != nil {
			return nil, err
		}
		r := LoadResult{Name: m.name}
		once := func(graphs string) (time.Duration, error) {
			start := time.Now()
			model, err := inference.LoadModel(ctx, cfg.Runtime, m.dir, inference.LoadOptions{GraphCache: graphs})
			if err != nil {
				return 0, err
			}
			d := time.Since(start)
			return d, model.Close()
		}
		median := func(graphs string) (time.Duration, error) {
			var ds []time.Duration
			for range loadRuns {
				d, err := once(graphs)
				if err != nil {
					return 0, err
				}
				ds = append(ds, d)
			}
			slices.Sort(ds)
			return ds[len(ds)/2], nil
		}
		if r.Uncached, err = median(""); err == nil {
			if r.First, err = once(cache); err == nil {
				r.Warm, err = median(cache)
			}
		}
		_ = os.RemoveAll(cache)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", m.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// WriteLoad prints the load times as a Markdown table.
func WriteLoad(w io.Writer, rows []LoadResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }
	fmt.Fprintln(w, "| model | load, no graph cache | first load (graph saved) | load from the cache | speed-up |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f× |\n", r.Name, ms(r.Uncached), ms(r.First), ms(r.Warm), r.Uncached.Seconds()/r.Warm.Seconds())
	}
}
