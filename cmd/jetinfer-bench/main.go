// Command jetinfer-bench measures the inference engine, and an in-process
// node serving it, on synthetic models of real sizes and prints the
// Markdown tables the README quotes (make bench); --only scaling replays a
// load profile against an adaptive endpoint and plots it (make scaling).
// It is a command of its own so that the server binary does not carry the
// benchmarks and their plotting.
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
	"github.com/jetinfer/jetinfer/inference/ortlib"
)

func main() {
	os.Exit(bench(os.Args[1:], os.Stdout, os.Stderr))
}

// bench runs the benchmarks on synthetic models and prints their tables.
func bench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jetinfer-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := benchmark.Config{}
	fs.IntVar(&cfg.Texts, "texts", 1000, "texts in the mixed-length corpus of the dense benchmark")
	fs.IntVar(&cfg.Docs, "docs", 24, "256-token documents of the sparse benchmark")
	fs.IntVar(&cfg.PipelineDocs, "pipeline-docs", 192, "mixed-length documents of the pipeline benchmark")
	fs.IntVar(&cfg.LatencyRequests, "latency-requests", 200, "sequential single-input requests of each latency measurement")
	fs.IntVar(&cfg.BulkDocs, "bulk-docs", 256, "long documents queued as the bulk ingest of the latency benchmark (those left when the searches end are not embedded)")
	fs.StringVar(&cfg.ProfileDir, "onnxruntime-profile", "", "int8: `DIR` where ONNX Runtime writes a profile of each float model and int8 copy, summed up by operator after the table")
	fs.IntVar(&cfg.PriorityDocs, "priority-docs", 512, "long documents the priority benchmark embeds alone and while searched; the paced idle searches last as long")
	fs.StringVar(&cfg.CacheDir, "cache-dir", ".cache/bench", "`DIR` keeping the generated models between runs")
	fs.StringVar(&cfg.Tokenizer, "tokenizer", "inference/tokenizer/testdata/bert-base-uncased/tokenizer.json", "bert-base-uncased tokenizer.json `FILE`")
	lib := fs.String("onnxruntime-lib", "", "ONNX Runtime shared `FILE` (default: $"+ortlib.LibraryEnv+", beside the executable, "+ortlib.CacheDir(os.LookupEnv)+", the system library path)")
	only := fs.String("only", "dense,sparse,memory,pipeline,latency,priority,load,int8", "comma-separated benchmarks to run; scaling (about 2 minutes), endpoints, hostile and many run only when named")
	scaling := benchmark.DefaultScalingProfile()
	fs.DurationVar(&scaling.Idle, "scaling-idle", scaling.Idle, "scaling: idle time before the burst")
	fs.IntVar(&scaling.BurstDocs, "scaling-burst", scaling.BurstDocs, "scaling: mixed-length documents published at once as the burst")
	fs.DurationVar(&scaling.Steady, "scaling-steady", scaling.Steady, "scaling: length of the steady load after the burst")
	fs.Float64Var(&scaling.SteadyRate, "scaling-rate", scaling.SteadyRate, "scaling: documents per second of the steady load")
	fs.DurationVar(&scaling.ZeroWait, "scaling-wait", scaling.ZeroWait, "scaling: longest wait, after the last publish, for every result and no allocation")
	fs.IntVar(&scaling.MaxAllocations, "scaling-max-allocations", scaling.MaxAllocations, "scaling: the endpoint's max_number_of_allocations")
	fs.IntVar(&scaling.Processors, "scaling-processors", scaling.Processors, "scaling: the node's processor budget")
	fs.DurationVar(&scaling.ScaleToZeroAfter, "scaling-scale-to-zero-after", scaling.ScaleToZeroAfter, "scaling: the node's --scale-to-zero-after")
	fs.DurationVar(&scaling.Cooldown, "scaling-scale-down-cooldown", scaling.Cooldown, "scaling: the node's --scale-down-cooldown")
	endpoints := fs.Int("endpoints", 8, "endpoints: how many endpoints the documents are spread over")
	endpointDocs := fs.Int("endpoints-docs", 4000, "endpoints: short documents published")
	many := benchmark.DefaultManyConfig()
	fs.IntVar(&many.Endpoints, "many-endpoints", many.Endpoints, "many: adaptive endpoints defined on the node")
	fs.IntVar(&many.Requests, "many-requests", many.Requests, "many: requests to idle endpoints, each a different one")
	fs.DurationVar(&many.Settle, "many-settle", many.Settle, "many: wait between the last PUT and the idle window (nats-server writes each new stream's state once, 2 to 2.5 minutes after it is created)")
	fs.DurationVar(&many.Idle, "many-idle", many.Idle, "many: how long the idle CPU is measured (spanning nats-server's 2-minute sync interval)")
	fs.StringVar(&many.Profile, "many-cpu-profile", "", "many: `FILE` to write the idle window's CPU profile to")
	scalingPNG := fs.String("scaling-png", "docs/scaling.png", "scaling: `FILE` the plot is written to")
	probe := fs.Int("memory-probe", 0, "internal: run one memory probe with this many allocations and print its peak RSS")
	separate := fs.Bool("separate-sessions", false, "internal: with --memory-probe, one session per allocation")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jetinfer-bench [flags]\n\nMeasures the inference engine, and an in-process node serving it, on synthetic models of real sizes and prints Markdown tables.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	path, err := ortlib.Find(ortlib.DefaultPlaces(*lib))
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer-bench: %v\n", err)
		return 1
	}
	rt, err := inference.NewRuntime(inference.RuntimeConfig{LibraryPath: path})
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer-bench: %v\n", err)
		return 1
	}
	defer func() { _ = rt.Close() }()
	cfg.Runtime = rt
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *probe > 0 {
		peak, err := benchmark.MemoryProbe(ctx, cfg, *probe, !*separate)
		if err != nil {
			fmt.Fprintf(stderr, "jetinfer-bench: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, peak)
		return 0
	}

	fmt.Fprintf(stdout, "jetinfer-bench: %d cores (GOMAXPROCS %d), ONNX Runtime %s\n\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), ortlib.Version)
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
		case "scaling":
			err = benchScaling(ctx, cfg, scaling, *scalingPNG, stdout)
		case "endpoints":
			err = benchEndpoints(ctx, cfg, *endpoints, *endpointDocs, stdout)
		case "hostile":
			err = benchHostile(ctx, cfg, stdout)
		case "many":
			err = benchMany(ctx, cfg, many, stdout)
		case "load":
			err = benchLoad(ctx, cfg, stdout)
		case "int8":
			err = benchInt8(ctx, cfg, stdout)
		case "priority":
			err = benchPriority(ctx, cfg, stdout)
		default:
			err = fmt.Errorf("unknown benchmark %q", name)
		}
		if err != nil {
			fmt.Fprintf(stderr, "jetinfer-bench %s: %v\n", name, err)
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

func benchPriority(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	r, err := benchmark.Priority(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Priority: searches on an endpoint of %d single-threaded allocations (every core) while %d documents of 400 words saturate them, ten searches a second\n\n", r.Allocations, r.Docs)
	benchmark.WritePriority(out, r)
	fmt.Fprintln(out)
	return nil
}

func benchLoad(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	rows, err := benchmark.Load(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Load: model load time without and with the optimized-graph cache (median of 3 loads, one thread)")
	fmt.Fprintln(out)
	benchmark.WriteLoad(out, rows)
	fmt.Fprintln(out)
	return nil
}

func benchInt8(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	rows, err := benchmark.Int8(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Int8: each model's int8 copy (model import --quantize int8) against the float model, one allocation, the same inputs through the engine")
	fmt.Fprintln(out)
	benchmark.WriteInt8(out, rows)
	fmt.Fprintln(out)
	if cfg.ProfileDir != "" {
		fmt.Fprintf(out, "ONNX Runtime's profiles (in %s; profiling slows every pass, so the ratios above are not the unprofiled ones):\n\n", cfg.ProfileDir)
		benchmark.WriteProfiles(out, rows, 6)
	}
	return nil
}

func benchSparse(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	allocations := []int{1}
	if n := runtime.NumCPU(); n > 1 {
		allocations = append(allocations, n)
	}
	rows, err := benchmark.Sparse(ctx, cfg, allocations, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Sparse: BERT-base size masked LM (12 layers, hidden 768, ELSER v2's architecture), %d documents of 256 tokens, one per call, in float and int8; Elasticsearch publishes 22 documents/s with 8 allocations on 16 vCPUs\n\n", cfg.Docs)
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
		probeArgs := append([]string{}, args...)
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
	fmt.Fprintf(out, "Pipeline: %d mixed-length documents on one allocation of the dense model, end to end through NATS (publish to inference.<token>.ingest until every result is in the endpoint's results stream) against the engine alone (pipeline.Runner.Ingest in groups of %d)\n\n",
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

func benchEndpoints(ctx context.Context, cfg benchmark.Config, endpoints, docs int, out io.Writer) error {
	r, err := benchmark.Endpoints(ctx, cfg, endpoints, docs)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Endpoints: %d short documents published at once, round-robin over %d endpoints of the dense model (one single-thread allocation each, on %d cores): when JetStream has stored them all, and when every result is back\n\n", docs, endpoints, runtime.NumCPU())
	benchmark.WriteEndpoints(out, r)
	fmt.Fprintln(out)
	return nil
}

func benchHostile(ctx context.Context, cfg benchmark.Config, out io.Writer) error {
	r, err := benchmark.Hostile(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Hostile: peak resident memory of a node (embedded nats-server included) serving one group of the largest documents the limits let through to the engine: %d documents of %d short inputs, dense model without chunking; each result passes the bound checked before embedding and is refused (413) once it outgrows the 8 MB message\n\n", r.Docs, r.Inputs)
	benchmark.WriteHostile(out, r)
	fmt.Fprintln(out)
	return nil
}

func benchMany(ctx context.Context, cfg benchmark.Config, mc benchmark.ManyConfig, out io.Writer) error {
	r, err := benchmark.ManyEndpoints(ctx, cfg, mc)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Many endpoints: %d adaptive endpoints (0 to 1 allocation) of the dense model on a node whose processors are the %d cores: PUT latency, idle CPU with all defined (measured %s after the last PUT), and requests to idle endpoints one after another (each takes the processor of an idle one)\n\n", mc.Endpoints, runtime.NumCPU(), mc.Settle)
	benchmark.WriteMany(out, r)
	fmt.Fprintln(out)
	return nil
}

func benchScaling(ctx context.Context, cfg benchmark.Config, p benchmark.ScalingProfile, png string, out io.Writer) error {
	r, err := benchmark.Scaling(ctx, cfg, p)
	if len(r.Rows) == 0 {
		return err
	}
	p = r.Profile
	oversubscribed := ""
	if p.MaxAllocations > runtime.NumCPU() {
		oversubscribed = fmt.Sprintf(": %d single-thread allocations oversubscribe the %d cores, so each runs slower when all are busy", p.MaxAllocations, runtime.NumCPU())
	}
	fmt.Fprintf(out, "Scaling: the adaptive endpoint %s (0 to %d allocations × 1 thread) serving the %s model, on a node with a processor budget of %d on %d cores%s; heartbeat %s, scale to zero after %s idle, no scale-down within %s of a scale-up. Load: idle %s, a burst of %d mixed-length documents published at once, %.0f documents/s for %s, then idle until the endpoint has no allocation. Backlog is the documents pending or in an allocation's hands; planned is the plan's target at the end of each second, running what the node last reported.\n\n",
		benchmark.ScalingEndpoint, p.MaxAllocations, r.Model, p.Processors, runtime.NumCPU(), oversubscribed, p.Heartbeat, p.ScaleToZeroAfter, p.Cooldown,
		p.Idle, p.BurstDocs, p.SteadyRate, p.Steady)
	benchmark.WriteScaling(out, r)
	if perr := benchmark.PlotScaling(r, png); perr != nil {
		err = errors.Join(err, perr)
	} else {
		fmt.Fprintf(out, "- plot: %s\n", png)
	}
	fmt.Fprintln(out)
	return err
}
