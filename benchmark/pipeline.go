package benchmark

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/pipeline"
)

// Names of the pipeline benchmark's rows.
const (
	PipelineEngine = "engine alone (Runner.Ingest)"
	PipelineNATS   = "NATS pipeline end to end"
)

// Pipeline measures documents per second end to end through a node (publish
// to the ingest subject, until the results stream holds every result) on
// one allocation, against the engine alone on the same documents and
// threads: pipeline.Runner.Ingest in groups of consumer.DefaultGroupDocs,
// what one allocation's bulk lane calls. Thread counts beyond the cores are
// skipped: the node's processor budget would not deploy them.
func Pipeline(ctx context.Context, cfg Config) (rows []Throughput, err error) {
	cfg = cfg.withDefaults()
	texts := Corpus(cfg.PipelineDocs, 4)
	b, err := startNode(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, b.close(ctx)) }()
	deployed := false
	for _, threads := range cfg.Threads {
		if threads > runtime.NumCPU() {
			continue
		}
		if deployed {
			// The next thread count replaces the endpoint: the budget
			// (one processor per core) would not deploy both at once.
			if err := b.deleteEndpoint(ctx); err != nil {
				return nil, err
			}
		}
		ep, err := b.putEndpoint(ctx, 1, threads)
		if err != nil {
			return nil, err
		}
		deployed = true
		m, err := denseModel(ctx, cfg, threads)
		if err != nil {
			return nil, err
		}
		engine, piped, err := measurePipeline(ctx, b, pipeline.Runner{Model: m, Endpoint: ep}, texts, fmt.Sprintf("t%d", threads))
		_ = m.Close()
		if err != nil {
			return nil, err
		}
		engine.Threads, piped.Threads = threads, threads
		rows = append(rows, engine, piped)
	}
	return rows, nil
}

func measurePipeline(ctx context.Context, b *benchNode, runner pipeline.Runner, texts []string, run string) (engine, piped Throughput, err error) {
	docs := make([]inferapi.Request, len(texts))
	for i, t := range texts {
		docs[i] = inferapi.Request{Input: []string{t}, InputType: inferapi.InputIngest}
	}
	// Warm-up, outside the timing: the first runs of a session and of the
	// deployment (connections, consumers, arenas) are slower.
	warm := min(4, len(texts))
	if _, err := runner.Ingest(ctx, docs[:warm]); err != nil {
		return engine, piped, err
	}
	if _, _, err := b.ingest(ctx, run+"w", texts[:warm]); err != nil {
		return engine, piped, fmt.Errorf("warm-up: %w", err)
	}

	runEngine := func() (Throughput, error) {
		t := Throughput{Name: PipelineEngine, Allocations: 1, Inputs: len(docs)}
		start := time.Now()
		for i := 0; i < len(docs); i += consumer.DefaultGroupDocs {
			group := docs[i:min(i+consumer.DefaultGroupDocs, len(docs))]
			bodies, err := runner.Ingest(ctx, group)
			if err != nil {
				return t, err
			}
			if len(bodies) != len(group) {
				return t, fmt.Errorf("ingest returned %d results for %d documents", len(bodies), len(group))
			}
		}
		t.Elapsed = time.Since(start)
		return t, nil
	}
	if engine, err = runEngine(); err != nil {
		return engine, piped, err
	}
	piped = Throughput{Name: PipelineNATS, Allocations: 1}
	if piped.Elapsed, piped.Inputs, err = b.ingest(ctx, run, texts); err != nil {
		return engine, piped, err
	}
	// The engine again after the pipeline, keeping the faster run, so that
	// the order of the measurements cannot flatter the pipeline.
	again, err := runEngine()
	if err != nil {
		return engine, piped, err
	}
	if again.Elapsed < engine.Elapsed {
		engine = again
	}
	return engine, piped, nil
}
