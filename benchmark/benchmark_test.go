package benchmark

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/orttest"
)

var testRuntime *inference.Runtime

func TestMain(m *testing.M) {
	os.Exit(orttest.Run(m, "..", func(rt *inference.Runtime) { testRuntime = rt }))
}

func config(texts int) Config {
	return Config{
		Runtime:   testRuntime,
		CacheDir:  "../.cache/bench",
		Tokenizer: "../inference/testdata/tokenizer/bert-base-uncased/tokenizer.json",
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
	rows, err := Dense(context.Background(), config(24))
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

func BenchmarkDense(b *testing.B) {
	cfg := config(200)
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
				t, err := Sparse(context.Background(), config(0), allocations)
				if err != nil {
					b.Fatal(err)
				}
				docs += t.Inputs
				elapsed += t.Elapsed.Seconds()
			}
			b.ReportMetric(float64(docs)/elapsed, "docs/s")
			b.ReportMetric(float64(docs)/elapsed/float64(allocations), "docs/s/core")
		})
	}
}
