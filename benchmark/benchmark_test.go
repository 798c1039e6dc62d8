package benchmark

import (
	"context"
	"fmt"
	"image"
	_ "image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/inference/synthbert"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/orttest"
)

var testRuntime *inference.Runtime

func TestMain(m *testing.M) {
	os.Exit(orttest.Run(m, "..", func(rt *inference.Runtime) { testRuntime = rt }))
}

// smallDense keeps the node smoke tests quick under the race detector: the
// import, download and load of a MiniLM-sized model are not what they test.
var smallDense = synthbert.Config{VocabSize: 30522, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64,
	MaxPositions: 512, TypeVocabSize: 2, NumLabels: 1, Head: synthbert.HeadHidden, Seed: 5, WeightScale: 0.2, LayerNormEps: 1e-12}

func testConfig(texts int) Config {
	return Config{
		Runtime:   testRuntime,
		CacheDir:  "../.cache/bench",
		Tokenizer: "../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json",
		Texts:     texts,
		Docs:      4,
		Threads:   []int{1},
	}
}

func TestCorpus(t *testing.T) {
	a, b := Corpus(500, 7), Corpus(500, 7)
	short, long := 0, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("Corpus is not deterministic at %d", i)
		}
		switch n := len(strings.Fields(a[i])); {
		case n < 20:
			short++
		case n >= 120:
			long++
		}
	}
	// 40% short and 20% long, give or take sampling noise.
	if short < 160 || short > 240 || long < 60 || long > 140 {
		t.Errorf("corpus has %d short and %d long texts of 500", short, long)
	}
	if d := Documents(3, 256, 1); len(d) != 3 || len(strings.Fields(d[0])) != 256 {
		t.Errorf("Documents = %d docs, first of %d words", len(d), len(strings.Fields(d[0])))
	}
}

// TestDenseRuns keeps the benchmark code working: a small run must produce
// sane rows and a table.
func TestDenseRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a MiniLM-L12 size model")
	}
	rows, err := Dense(context.Background(), testConfig(24))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Tokens != rows[1].Tokens || rows[0].PaddedTokens != rows[1].PaddedTokens || rows[0].Inputs != 24 || rows[1].PaddingRatio() < 1 {
		t.Fatalf("Dense rows = %+v", rows)
	}
	var table strings.Builder
	WriteDense(&table, rows)
	if !strings.Contains(table.String(), "| 1 | engine end to end |") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestInt8Runs keeps the int8 benchmark working: each model in float and int8 on the same inputs, the speed-up
// and the agreement measured (small models, so the figures are not the benchmark's).
func TestInt8Runs(t *testing.T) {
	cfg := testConfig(0)
	cfg.DenseModel = &smallDense
	cfg.ProfileDir = t.TempDir()
	// A profile left by an earlier run under the same name is not added in.
	stale := filepath.Join(cfg.ProfileDir, "dense-int8-1t_2020-01-01_00-00-00.json")
	if err := os.WriteFile(stale, []byte(`[{"cat":"Node","name":"x_kernel_time","dur":1000000000,"args":{"op_name":"Stale"}}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := Int8(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	for i, want := range []string{"min_cosine", "top20_overlap", "spearman"} {
		r := rows[i]
		if r.Agreement.Measure != want || r.Agreement.Value <= 0 || r.Float.Inputs != r.Int8.Inputs || r.Float.Tokens != r.Int8.Tokens ||
			r.Other.Tokens != r.Int8.Tokens || r.Float.Elapsed <= 0 || r.Int8.Elapsed <= 0 || r.Other.Elapsed <= 0 ||
			r.OtherAgreement.Measure != want || !r.OtherAgreement.Holds() || r.Form != "fused" {
			t.Errorf("row %d: %+v", i, r)
		}
	}
	if rows[0].MeanCosine < rows[0].Agreement.Value || rows[2].ScoreStddev <= 0 || rows[2].Agreement.Inputs != 50 {
		t.Errorf("dense mean cosine %v below its minimum %v, or rerank spread %v", rows[0].MeanCosine, rows[0].Agreement.Value, rows[2].ScoreStddev)
	}
	var table strings.Builder
	WriteInt8(&table, rows)
	if !strings.Contains(table.String(), "| sparse (BERT-base MLM, 256 tokens) | 1 |") || !strings.Contains(table.String(), "| fused | ") {
		t.Errorf("table:\n%s", table.String())
	}
	// The profiles: the float model ran its MatMuls in float, the fused int8 copy its attention as one QAttention per
	// layer per pass and no float MatMul with a weight (the attention's own products run inside QAttention).
	for i, r := range rows {
		f, q := r.FloatProfile, r.Int8Profile
		qa := slices.IndexFunc(q, func(o OperatorTime) bool { return o.Op == "QAttention" })
		if f.Of("MatMul") <= 0 || f.Of("QAttention") != 0 || f.Of("Stale") != 0 || q.Of("Stale") != 0 || qa < 0 ||
			q[qa].Calls%smallDense.Layers != 0 || q.Of("DynamicQuantizeMatMul") <= 0 || q.Of("MatMul") != 0 || q.Total() <= 0 {
			t.Errorf("row %d profiles: float %+v, int8 %+v", i, f, q)
		}
	}
	table.Reset()
	WriteProfiles(&table, rows, 4)
	if !strings.Contains(table.String(), "| QAttention | | | ") || strings.Count(table.String(), "| operator | float |") != 3 {
		t.Errorf("profiles:\n%s", table.String())
	}
}

// TestPriorityRuns keeps the priority benchmark working: every document is
// embedded twice, the paced idle searches are as many as the bulk alone
// took tenths of a second, and searches ran during the bulk.
func TestPriorityRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node")
	}
	cfg := testConfig(0)
	cfg.DenseModel = &smallDense
	cfg.LatencyRequests = 10
	cfg.PriorityDocs = 3000 // the small model is fast: enough for about 50 searches during the bulk
	r, err := Priority(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Docs != cfg.PriorityDocs || r.BulkAlone <= 0 || r.BulkSearched <= 0 || len(r.BackToBack) != cfg.LatencyRequests {
		t.Fatalf("%+v", r)
	}
	if want := max(cfg.LatencyRequests, int(r.BulkAlone/searchEvery)); len(r.Idle) != want {
		t.Errorf("%d paced idle searches for a bulk of %s, want %d", len(r.Idle), r.BulkAlone, want)
	}
	for name, l := range map[string]Latencies{"back to back": r.BackToBack, "idle": r.Idle, "saturated": r.Saturated} {
		if slices.ContainsFunc(l, func(d time.Duration) bool { return d <= 0 }) || l.P99() < l.P50() {
			t.Errorf("%s: %v", name, l)
		}
	}
	t.Logf("bulk alone %s, searched %s; %d searches during it", r.BulkAlone, r.BulkSearched, len(r.Saturated))
	var table strings.Builder
	WritePriority(&table, r)
	if want := fmt.Sprintf("| searches during the bulk (%d) |", len(r.Saturated)); !strings.Contains(table.String(), want) {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestPipelineRuns keeps the pipeline benchmark working: a tiny run must
// get a result for every document, through NATS and from the engine.
func TestPipelineRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node")
	}
	cfg := testConfig(0)
	cfg.DenseModel = &smallDense
	cfg.PipelineDocs = 6
	rows, err := Pipeline(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != PipelineEngine || rows[1].Name != PipelineNATS {
		t.Fatalf("Pipeline rows = %+v", rows)
	}
	for _, r := range rows {
		if r.Inputs != cfg.PipelineDocs || r.Elapsed <= 0 || r.Threads != 1 {
			t.Errorf("%s: %d of %d documents in %s on %d threads", r.Name, r.Inputs, cfg.PipelineDocs, r.Elapsed, r.Threads)
		}
	}
	var table strings.Builder
	WritePipeline(&table, rows)
	if !strings.Contains(table.String(), "| 1 | "+PipelineNATS+" | 6 |") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestLatencyRuns keeps the latency benchmark working: every measurement
// has its samples, each a real duration.
func TestLatencyRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node")
	}
	cfg := testConfig(0)
	cfg.DenseModel = &smallDense
	cfg.LatencyRequests = 10
	// The small model is fast: enough bulk to outlast the searches.
	cfg.BulkDocs = 300
	r, err := Latency(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]Latencies{"engine": r.Engine, "nats": r.NATS, "http": r.HTTP, "idle": r.Idle, "bulk": r.Bulk} {
		if len(l) != cfg.LatencyRequests {
			t.Errorf("%s: %d samples, want %d", name, len(l), cfg.LatencyRequests)
		}
		for i, d := range l {
			if d <= 0 {
				t.Errorf("%s: sample %d is %s", name, i, d)
			}
		}
		if l.P99() < l.P50() {
			t.Errorf("%s: p99 %s < p50 %s", name, l.P99(), l.P50())
		}
	}
	var table strings.Builder
	WriteOverhead(&table, r)
	WriteSearchUnderBulk(&table, r)
	if !strings.Contains(table.String(), "| bulk ingest running | 10 |") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestScalingRuns keeps the scaling demo working: on a tiny profile the
// burst must scale the endpoint past one allocation, every document must
// get its result, and the plot must be a PNG.
func TestScalingRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node for about 20 s")
	}
	cfg := testConfig(0)
	cfg.DenseModel = &smallDense
	p := ScalingProfile{
		Idle: time.Second,
		// Long documents, enough of them that the small model's work on
		// the burst (the rate times the inference time) clearly exceeds
		// one allocation, however the controller's samples fall.
		BurstDocs: 800, DocWords: 400,
		Steady: 3 * time.Second, SteadyRate: 10,
		// Only bounds the wait for the last results and scale to zero:
		// generous, for a loaded machine under the race detector.
		ZeroWait:       2 * time.Minute,
		MaxAllocations: 3, Processors: 4,
		Heartbeat: time.Second, ScaleToZeroAfter: 2 * time.Second, Cooldown: time.Second,
	}
	r, err := Scaling(context.Background(), cfg, p)
	var table strings.Builder
	WriteScaling(&table, r)
	t.Logf("scaling:\n%s", table.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := p.BurstDocs + 3*10; r.Published != want || r.Results != want {
		t.Errorf("%d documents published, %d results; want %d of each", r.Published, r.Results, want)
	}
	if r.Reaction < 0 || r.MaxTarget < 2 {
		t.Errorf("the burst did not scale the endpoint past one allocation: targets %v", r.Targets)
	}
	if r.Zero < 0 {
		t.Errorf("the endpoint did not scale to zero after the load: targets %v", r.Targets)
	}
	if r.BacklogPeak <= 0 || !strings.Contains(table.String(), "| burst |") {
		t.Errorf("backlog peak %d; table:\n%s", r.BacklogPeak, table.String())
	}

	png := filepath.Join(t.TempDir(), "scaling.png")
	if err := PlotScaling(r, png); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ic, format, err := image.DecodeConfig(f)
	if err != nil || format != "png" || ic.Width <= 0 || ic.Height <= 0 {
		t.Errorf("plot: %s %dx%d, %v", format, ic.Width, ic.Height, err)
	}
}

func TestPercentile(t *testing.T) {
	l := Latencies{5, 1, 4, 2, 3}
	if l.P50() != 3 || l.P99() != 5 || l.Percentile(20) != 1 || (Latencies{}).P50() != 0 {
		t.Errorf("p50 %d p99 %d p20 %d", l.P50(), l.P99(), l.Percentile(20))
	}
	if l[0] != 5 {
		t.Error("Percentile sorted the samples in place")
	}
}

func BenchmarkDense(b *testing.B) {
	cfg := testConfig(200)
	for _, threads := range []int{1, 2} {
		m, err := denseModel(context.Background(), cfg, threads)
		if err != nil {
			b.Fatal(err)
		}
		corpus := Corpus(cfg.Texts, 1)
		b.Run(fmt.Sprintf("engine/threads=%d", threads), func(b *testing.B) {
			st := m.Stats()
			real0, padded0 := st.RealTokens.Load(), st.PaddedTokens.Load()
			for b.Loop() {
				if _, err := m.Embed(context.Background(), corpus, ""); err != nil {
					b.Fatal(err)
				}
			}
			real, padded := st.RealTokens.Load()-real0, st.PaddedTokens.Load()-padded0
			b.ReportMetric(float64(real)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(b.N*len(corpus))/b.Elapsed().Seconds(), "texts/s")
			b.ReportMetric(float64(padded)/float64(real), "padding")
		})
		b.Run(fmt.Sprintf("raw-ort/threads=%d", threads), func(b *testing.B) {
			batches, err := m.PrepareBatches(corpus, "")
			if err != nil {
				b.Fatal(err)
			}
			var real int
			for b.Loop() {
				for _, batch := range batches {
					if err := m.RunBatch(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
					real += batch.RealTokens()
				}
			}
			b.ReportMetric(float64(real)/b.Elapsed().Seconds(), "tokens/s")
		})
		_ = m.Close()
	}
}

func BenchmarkSparse(b *testing.B) {
	for _, allocations := range []int{1, 2} {
		b.Run(fmt.Sprintf("allocations=%d", allocations), func(b *testing.B) {
			var docs int
			var elapsed float64
			for b.Loop() {
				rows, err := Sparse(context.Background(), testConfig(0), []int{allocations}, false)
				if err != nil {
					b.Fatal(err)
				}
				docs += rows[0].Inputs
				elapsed += rows[0].Elapsed.Seconds()
			}
			b.ReportMetric(float64(docs)/elapsed, "docs/s")
			b.ReportMetric(float64(docs)/elapsed/float64(allocations), "docs/s/core")
		})
	}
}
