package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/jetinfer/jetinfer/benchmark"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/inference"
)

// bench runs the benchmarks on synthetic models and prints their tables.
func bench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jetinfer bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := benchmark.Config{}
	fs.IntVar(&cfg.Texts, "texts", 1000, "texts in the mixed-length corpus of the dense benchmark")
	fs.IntVar(&cfg.Docs, "docs", 24, "256-token documents of the sparse benchmark")
	fs.IntVar(&cfg.PipelineDocs, "pipeline-docs", 192, "mixed-length documents of the pipeline benchmark")
	fs.IntVar(&cfg.LatencyRequests, "latency-requests", 200, "sequential single-input requests of each latency measurement")
	fs.IntVar(&cfg.BulkDocs, "bulk-docs", 256, "long documents queued as the bulk ingest of the latency benchmark (those left when the searches end are not embedded)")
	fs.StringVar(&cfg.CacheDir, "cache-dir", ".cache/bench", "`DIR` keeping the generated models between runs")
	fs.StringVar(&cfg.Tokenizer, "tokenizer", "inference/testdata/tokenizer/bert-base-uncased/tokenizer.json", "bert-base-uncased tokenizer.json `FILE`")
	lib := fs.String("onnxruntime-lib", "", "ONNX Runtime shared library (default $"+inference.LibraryEnv+" or .cache/onnxruntime)")
	only := fs.String("only", "dense,sparse,memory,pipeline,latency", "comma-separated benchmarks to run")
	probe := fs.Int("memory-probe", 0, "internal: run one memory probe with this many allocations and print its peak RSS")
	separate := fs.Bool("separate-sessions", false, "internal: with --memory-probe, one session per allocation")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jetinfer bench [flags]\n\nMeasures the inference engine, and an in-process node serving it, on synthetic models of real sizes and prints Markdown tables.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *lib == "" {
		wd, _ := os.Getwd()
		*lib = inference.DefaultLibraryPath(wd)
	}
	rt, err := inference.NewRuntime(inference.RuntimeConfig{LibraryPath: *lib})
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer bench: %v\n", err)
		return 1
	}
	defer func() { _ = rt.Close() }()
	cfg.Runtime = rt
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *probe > 0 {
		peak, err := benchmark.MemoryProbe(ctx, cfg, *probe, !*separate)
		if err != nil {
			fmt.Fprintf(stderr, "jetinfer bench: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, peak)
		return 0
	}

	fmt.Fprintf(stdout, "jetinfer bench: %d cores (GOMAXPROCS %d), ONNX Runtime %s\n\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), inference.ORTVersion)
	for _, name := range strings.Split(*only, ",") {
		var err error
		switch name {
		case "dense":
			err = benchDense(ctx, cfg, stdout)
		case "sparse":
			err = benchSparse(ctx, cfg, stdout)
		case "memory":
			err = benchMemory(ctx, cfg, args, stdout)
		case "pipeline":
			err = benchPipeline(ctx, cfg, stdout)
		case "latency":
			err = benchLatency(ctx, cfg, stdout)
		default:
			err = fmt.Errorf("unknown benchmark %q", name)
		}
		if err != nil {
			fmt.Fprintf(stderr, "jetinfer bench %s: %v\n", name, err)
			return 1
		}
	}
	return 0
}

func benchDense(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	rows, err := benchmark.Dense(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Dense: MiniLM-L12 / multilingual-e5-small size (12 layers, hidden 384), %d mixed-length texts\n\n", cfg.Texts)
	benchmark.WriteDense(out, rows)
	fmt.Fprintln(out)
	return nil
}

func benchSparse(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	var rows []benchmark.Throughput
	for _, allocations := range []int{1, runtime.NumCPU()} {
		if allocations > 1 && len(rows) > 0 && rows[0].Allocations == allocations {
			continue
		}
		r, err := benchmark.Sparse(ctx, cfg, allocations)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	fmt.Fprintf(out, "Sparse: BERT-base size masked LM (12 layers, hidden 768, ELSER v2's architecture), %d documents of 256 tokens\n\n", cfg.Docs)
	benchmark.WriteSparse(out, rows)
	fmt.Fprintln(out)
	return nil
}

// benchMemory runs each probe in a fresh process, since peak memory is per
// process.
func benchMemory(ctx context.Context, cfg benchmark.Config, args []string, out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []benchmark.Memory
	for _, p := range []struct {
		allocations int
		separate    bool
	}{{1, false}, {2, false}, {2, true}} {
		probeArgs := append([]string{"bench"}, args...)
		probeArgs = append(probeArgs, "--memory-probe", strconv.Itoa(p.allocations))
		if p.separate {
			probeArgs = append(probeArgs, "--separate-sessions")
		}
		cmd := exec.CommandContext(ctx, self, probeArgs...)
		cmd.Stderr = os.Stderr
		res, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("memory probe: %w", err)
		}
		peak, err := strconv.ParseInt(strings.TrimSpace(string(res)), 10, 64)
		if err != nil {
			return fmt.Errorf("memory probe output %q: %w", res, err)
		}
		sessions := 1
		if p.separate {
			sessions = p.allocations
		}
		rows = append(rows, benchmark.Memory{Allocations: p.allocations, Sessions: sessions, PeakBytes: peak})
	}
	fmt.Fprintln(out, "Memory: dense model above, allocations running concurrently")
	fmt.Fprintln(out)
	benchmark.WriteMemory(out, rows)
	fmt.Fprintln(out)
	return nil
}

func benchPipeline(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	rows, err := benchmark.Pipeline(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Pipeline: %d mixed-length documents on one allocation of the dense model, end to end through NATS (publish to inference.<token>.ingest until every result is in INFERENCE_RESULTS) against the engine alone (pipeline.Runner.Ingest in groups of %d)\n\n",
		cfg.PipelineDocs, consumer.DefaultGroupDocs)
	benchmark.WritePipeline(out, rows)
	fmt.Fprintln(out)
	return nil
}

func benchLatency(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	r, err := benchmark.Latency(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Latency: one short search input, %d sequential requests of each kind (interleaved), dense model on one allocation × %d thread: what a NATS request and POST _inference add to the engine alone\n\n", cfg.LatencyRequests, r.Threads)
	benchmark.WriteOverhead(out, r)
	fmt.Fprintln(out)
	fmt.Fprintf(out, "Search latency under bulk: the same POST _inference searches while the endpoint idles, then while %d queued documents of 400 words (about 512 tokens, the model's limit) keep its allocation busy\n\n", r.BulkDocs)
	benchmark.WriteSearchUnderBulk(out, r)
	fmt.Fprintln(out)
	return nil
}
