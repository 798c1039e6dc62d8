package inference

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/ortlib"
	"github.com/jetinfer/jetinfer/inference/synthbert"
	"github.com/jetinfer/jetinfer/inference/tokenizer"
)

// testRuntime is the one ONNX Runtime environment of this test binary,
// owned by TestMain.
var testRuntime *Runtime

func TestMain(m *testing.M) {
	lib, err := ortLibrary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testRuntime, err = NewRuntime(RuntimeConfig{LibraryPath: lib})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := testRuntime.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// ortLibrary finds the ONNX Runtime library: $ONNXRUNTIME_LIB, or the
// project-local copy, installed on demand.
func ortLibrary() (string, error) {
	if p := os.Getenv(ortlib.LibraryEnv); p != "" {
		return p, nil
	}
	out, err := exec.Command("../scripts/install-ort.sh").Output()
	if err != nil {
		return "", fmt.Errorf("install ONNX Runtime with scripts/install-ort.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

const bertTokenizer = "tokenizer/testdata/bert-base-uncased/tokenizer.json"

// tinyConfig is a small BERT with bert-base-uncased's vocabulary, so that
// the real tokenizer feeds it.
func tinyConfig(head synthbert.Head, seed uint64) synthbert.Config {
	return synthbert.Config{
		VocabSize: 30522, Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPositions: 64,
		TypeVocabSize: 2, NumLabels: 1, Head: head, Seed: seed, WeightScale: 0.2, LayerNormEps: 1e-12,
	}
}

// writeModel writes a model artifact directory for cfg with jetinfer.json.
func writeModel(t testing.TB, cfg synthbert.Config, jetinferJSON string) (string, *synthbert.Model) {
	t.Helper()
	m, err := synthbert.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.WriteONNX(filepath.Join(dir, artifact.ONNXFile)); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(bertTokenizer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	if jetinferJSON != "" {
		if err := os.WriteFile(filepath.Join(dir, artifact.ConfigFile), []byte(jetinferJSON), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, m
}

func load(t *testing.T, dir string, opts LoadOptions) *Model {
	t.Helper()
	m, err := LoadModel(context.Background(), testRuntime, dir, opts)
	if err != nil {
		t.Fatalf("LoadModel: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// reference runs the pure-Go forward pass on one encoding, unpadded.
func reference(t *testing.T, ref *synthbert.Model, e tokenizer.Encoding) [][]float32 {
	t.Helper()
	mask := make([]int64, len(e.IDs))
	for i := range mask {
		mask[i] = 1
	}
	out, err := ref.Forward([][]int64{e.IDs}, [][]int64{e.TypeIDs}, [][]int64{mask})
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

var mixedTexts = []string{
	"",
	"hello",
	"The quick brown fox jumps over the lazy dog.",
	"Café naïve résumé — accents, CJK 中文 and emoji 🙂 in one input",
	strings.Repeat("a long document about search relevance and embeddings ", 20), // truncated at 64 tokens
	"   ",
	"short query",
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// meanOf averages rows of hidden states.
func meanOf(h [][]float32) []float32 {
	out := make([]float32, len(h[0]))
	for d := range out {
		var s float64
		for _, row := range h {
			s += float64(row[d])
		}
		out[d] = float32(s / float64(len(h)))
	}
	return out
}

func TestTextEmbeddingMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		pool         func(h [][]float32) []float32
		normalize    bool
	}{
		{"mean, normalised, prefixes", `{"task_type":"text_embedding","pooling":"mean","normalize":true,"max_sequence_length":64,"prefix_strings":{"search":"query: ","ingest":"passage: "}}`,
			meanOf, true},
		{"cls, raw", `{"task_type":"text_embedding","pooling":"cls","normalize":false,"max_sequence_length":64}`,
			func(h [][]float32) []float32 { return h[0] }, false},
		// Normalisation hides a wrongly scaled mean; check the raw mean too.
		{"mean, raw", `{"task_type":"text_embedding","pooling":"mean","normalize":false,"max_sequence_length":64}`,
			meanOf, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, ref := writeModel(t, tinyConfig(synthbert.HeadHidden, 1), tc.config)
			m := load(t, dir, LoadOptions{Threads: 1, Batch: BatchConfig{MaxTokens: 100, MaxRows: 3}})
			if got := m.Spec().Dimensions; got != 32 {
				t.Fatalf("Dimensions = %d; want 32", got)
			}
			got, err := m.Embed(context.Background(), mixedTexts, InputSearch)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range mixedTexts {
				enc, err := m.tok.Encode(m.prefixed([]string{text}, InputSearch, RunOptions{})[0])
				if err != nil {
					t.Fatal(err)
				}
				want := tc.pool(reference(t, ref, enc))
				if tc.normalize {
					var ss float64
					for _, v := range want {
						ss += float64(v) * float64(v)
					}
					for d := range want {
						want[d] = float32(float64(want[d]) / math.Sqrt(ss))
					}
				}
				if len(got[i]) != len(want) {
					t.Fatalf("text %d: %d dims; want %d", i, len(got[i]), len(want))
				}
				for d := range want {
					if !near(float64(got[i][d]), float64(want[d]), 1e-4) {
						t.Fatalf("text %d (%q) dim %d = %v; reference %v", i, text, d, got[i][d], want[d])
					}
				}
			}
			// Prefixes matter: the same text as ingest differs.
			ingest, err := m.Embed(context.Background(), mixedTexts[1:2], InputIngest)
			if err != nil {
				t.Fatal(err)
			}
			if tc.normalize && near(float64(ingest[0][0]), float64(got[1][0]), 1e-7) && near(float64(ingest[0][1]), float64(got[1][1]), 1e-7) {
				t.Errorf("search and ingest embeddings are equal; prefixes were not applied")
			}
		})
	}
}

func TestEmbeddingDoesNotDependOnBatchMates(t *testing.T) {
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 2), `{"task_type":"text_embedding","max_sequence_length":64}`)
	m := load(t, dir, LoadOptions{Threads: 2})
	all, err := m.Embed(context.Background(), mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range mixedTexts {
		alone, err := m.Embed(context.Background(), []string{text}, "")
		if err != nil {
			t.Fatal(err)
		}
		for d := range alone[0] {
			if !near(float64(alone[0][d]), float64(all[i][d]), 1e-5) {
				t.Fatalf("text %d dim %d: alone %v, in a batch %v", i, d, alone[0][d], all[i][d])
			}
		}
	}
	st := m.Stats()
	if st.RealTokens.Load() == 0 || st.PaddedTokens.Load() < st.RealTokens.Load() {
		t.Errorf("stats: real %d padded %d", st.RealTokens.Load(), st.PaddedTokens.Load())
	}
}

func TestSparseEmbeddingMatchesReference(t *testing.T) {
	dir, ref := writeModel(t, tinyConfig(synthbert.HeadMaskedLM, 3), `{"task_type":"sparse_embedding","max_sequence_length":64}`)
	m := load(t, dir, LoadOptions{Threads: 1})
	got, err := m.SparseEmbed(context.Background(), mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range mixedTexts {
		enc, err := m.tok.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Truncated != enc.Truncated || (i == 4) != enc.Truncated {
			t.Errorf("text %d: Truncated = %v; encoding says %v", i, got[i].Truncated, enc.Truncated)
		}
		// Reference SPLADE: max over positions of log(1+ReLU(logit)).
		want := map[string]float64{}
		for _, row := range reference(t, ref, enc) {
			for v, x := range row {
				if w := math.Log1p(math.Max(0, float64(x))); w > want[m.tok.Token(int64(v))] {
					want[m.tok.Token(int64(v))] = w
				}
			}
		}
		gotW := map[string]float64{}
		prev := math.Inf(1)
		for _, wt := range got[i].Tokens {
			if float64(wt.Weight) > prev {
				t.Fatalf("text %d: tokens not sorted by weight", i)
			}
			prev = float64(wt.Weight)
			if wt.Weight <= 0 {
				t.Fatalf("text %d: zero weight for %q kept", i, wt.Token)
			}
			gotW[wt.Token] = float64(wt.Weight)
		}
		for tok, w := range want {
			if w > 1e-3 && !near(gotW[tok], w, 1e-4) {
				t.Fatalf("text %d token %q weight %v; reference %v", i, tok, gotW[tok], w)
			}
		}
		for tok, w := range gotW {
			if w > 1e-3 && !near(want[tok], w, 1e-4) {
				t.Fatalf("text %d token %q weight %v; reference %v", i, tok, w, want[tok])
			}
		}
		if len(gotW) < 10 {
			t.Errorf("text %d: only %d tokens; the test model should activate many", i, len(gotW))
		}
	}
}

func TestRerankMatchesReference(t *testing.T) {
	for _, sig := range []bool{false, true} {
		config := `{"task_type":"rerank","max_sequence_length":64}`
		if sig {
			config = `{"task_type":"rerank","max_sequence_length":64,"rerank_scores":"sigmoid"}`
		}
		dir, ref := writeModel(t, tinyConfig(synthbert.HeadClassifier, 4), config)
		m := load(t, dir, LoadOptions{Threads: 1, Batch: BatchConfig{MaxTokens: 64, MaxRows: 2}})
		query := "what is a fox?"
		got, err := m.Rerank(context.Background(), query, mixedTexts)
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[float32]bool{}
		for i, doc := range mixedTexts {
			enc, err := m.tok.EncodePair(query, doc)
			if err != nil {
				t.Fatal(err)
			}
			want := float64(reference(t, ref, enc)[0][0])
			if sig {
				want = 1 / (1 + math.Exp(-want))
			}
			if !near(float64(got[i]), want, 1e-4) {
				t.Fatalf("sigmoid %v doc %d score %v; reference %v", sig, i, got[i], want)
			}
			distinct[got[i]] = true
		}
		if len(distinct) < 5 {
			t.Errorf("scores %v barely differ; the test model should tell documents apart", got)
		}
	}
}

func TestLoadModelRejects(t *testing.T) {
	t.Run("config disagrees with the graph", func(t *testing.T) {
		dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 5), `{"task_type":"sparse_embedding"}`)
		_, err := LoadModel(context.Background(), testRuntime, dir, LoadOptions{})
		if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), `the graph has no output "logits" (it has ["last_hidden_state"])`) {
			t.Fatalf("LoadModel = %v", err)
		}
	})
	t.Run("truncated model file", func(t *testing.T) {
		dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 5), `{"task_type":"text_embedding"}`)
		path := filepath.Join(dir, artifact.ONNXFile)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = LoadModel(context.Background(), testRuntime, dir, LoadOptions{})
		if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), "model.onnx") {
			t.Fatalf("LoadModel(truncated) = %v", err)
		}
	})
	t.Run("rerank tokenizer without a pair template", func(t *testing.T) {
		data, err := os.ReadFile(bertTokenizer)
		if err != nil {
			t.Fatal(err)
		}
		var file map[string]any
		if err := json.Unmarshal(data, &file); err != nil {
			t.Fatal(err)
		}
		delete(file["post_processor"].(map[string]any), "pair")
		noPair, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range []string{"rerank", "text_embedding"} {
			head := synthbert.HeadClassifier
			if task == "text_embedding" {
				head = synthbert.HeadHidden
			}
			dir, _ := writeModel(t, tinyConfig(head, 5), `{"task_type":"`+task+`","max_sequence_length":64}`)
			if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), noPair, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := LoadModel(context.Background(), testRuntime, dir, LoadOptions{})
			if task == "text_embedding" {
				// Only rerank encodes pairs.
				if err != nil {
					t.Fatalf("LoadModel(text_embedding) = %v", err)
				}
				_ = m.Close()
				continue
			}
			if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), "tokenizer.json") || !strings.Contains(err.Error(), "pairs") {
				t.Fatalf("LoadModel(rerank) = %v", err)
			}
		}
	})
	t.Run("batch bounds", func(t *testing.T) {
		dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 5), `{"task_type":"text_embedding","max_sequence_length":64}`)
		for _, b := range []BatchConfig{{MaxTokens: 0, MaxRows: 4}, {MaxTokens: -1}, {MaxTokens: 100, MaxRows: -1}} {
			_, err := LoadModel(context.Background(), testRuntime, dir, LoadOptions{Batch: b})
			if err == nil || errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), "batch Max") {
				t.Errorf("LoadModel(Batch %+v) = %v", b, err)
			}
		}
		m := load(t, dir, LoadOptions{Batch: BatchConfig{MaxTokens: 100}})
		if want := (BatchConfig{MaxTokens: 100, MaxRows: DefaultBatch().MaxRows}); m.batch != want {
			t.Errorf("batch = %+v; want %+v", m.batch, want)
		}
		if m := load(t, dir, LoadOptions{}); m.batch != DefaultBatch() {
			t.Errorf("batch = %+v; want DefaultBatch %+v", m.batch, DefaultBatch())
		}
	})
	t.Run("tokenizer with an unknown model type", func(t *testing.T) {
		dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 5), `{"task_type":"text_embedding"}`)
		if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), []byte(`{"model":{"type":"Quantum"}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadModel(context.Background(), testRuntime, dir, LoadOptions{})
		if !errors.Is(err, ErrInvalidModel) {
			t.Fatalf("LoadModel(bad tokenizer) = %v", err)
		}
	})
}

func TestCancelStopsWaiting(t *testing.T) {
	cfg := tinyConfig(synthbert.HeadHidden, 6)
	cfg.Hidden, cfg.Intermediate, cfg.Layers, cfg.MaxPositions = 128, 512, 6, 512
	dir, _ := writeModel(t, cfg, `{"task_type":"text_embedding","max_sequence_length":512}`)
	m := load(t, dir, LoadOptions{Threads: 1})
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = strings.Repeat(fmt.Sprintf("word%d ", i), 400)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Embed(ctx, texts, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("Embed with a cancelled context = %v", err)
	}
	if n := m.Stats().Batches.Load(); n != 0 {
		t.Fatalf("%d batches ran for a cancelled context", n)
	}

	t.Run("terminated before ORT returns", func(t *testing.T) {
		// The hook cancels as the first batch is handed to ORT and waits until
		// Terminate has returned: ORT has the terminate flag before its Run
		// can end, so the run fails rather than completes, and no later batch
		// starts.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		runs := 0
		m.sess.beforeRun = func(_ context.Context, terminated <-chan struct{}) {
			runs++
			cancel()
			<-terminated
		}
		defer func() { m.sess.beforeRun = nil }()
		before := m.Stats().Batches.Load()
		if _, err := m.Embed(ctx, texts, ""); !errors.Is(err, context.Canceled) {
			t.Fatalf("Embed cancelled during its first batch = %v", err)
		}
		if runs != 1 {
			t.Errorf("%d runs started; want only the first batch's", runs)
		}
		if n := m.Stats().Batches.Load() - before; n != 0 {
			t.Errorf("%d batches completed; the terminated run should not", n)
		}
	})

	t.Run("cancelled from another goroutine while ORT runs", func(t *testing.T) {
		// Terminate races with the run here (run with -race): whatever the
		// interleaving, Embed returns the context's error.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		m.sess.beforeRun = func(context.Context, <-chan struct{}) { once.Do(func() { go cancel() }) }
		defer func() { m.sess.beforeRun = nil }()
		if _, err := m.Embed(ctx, texts, ""); !errors.Is(err, context.Canceled) {
			t.Fatalf("Embed cancelled during its first batch = %v", err)
		}
	})

	// The model still works afterwards.
	got, err := m.Embed(context.Background(), texts[:2], "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != 128 {
		t.Fatalf("Embed after cancellations: %d vectors of %d", len(got), len(got[0]))
	}
}

// Close waits for the calls in flight; every call either completes or
// returns ErrClosed (run with -race).
func TestCloseWhileCallsRun(t *testing.T) {
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 11), `{"task_type":"text_embedding","max_sequence_length":64}`)
	m := load(t, dir, LoadOptions{Threads: 1})
	ctx := context.Background()
	batches, err := m.PrepareBatches(mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	const callers = 8
	started := make(chan struct{}, callers)
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				var err error
				switch (i + n) % 3 {
				case 0:
					_, err = m.Embed(ctx, mixedTexts, "")
				case 1:
					err = m.RunBatch(ctx, batches[0])
				default:
					_, err = m.PrepareBatches(mixedTexts, "")
				}
				if n == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range callers {
		<-started
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call during Close: %v", err)
	}

	_, errEmbed := m.Embed(ctx, mixedTexts, "")
	_, errSparse := m.SparseEmbed(ctx, mixedTexts, "")
	_, errRerank := m.Rerank(ctx, "q", mixedTexts)
	_, errPrepare := m.PrepareBatches(mixedTexts, "")
	errRun := m.RunBatch(ctx, batches[0])
	for i, err := range []error{errEmbed, errSparse, errRerank, errPrepare, errRun} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call %d after Close = %v; want ErrClosed", i, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestConcurrentCallsShareOneModel(t *testing.T) {
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadHidden, 7), `{"task_type":"text_embedding","max_sequence_length":64}`)
	m := load(t, dir, LoadOptions{Threads: 1})
	want, err := m.Embed(context.Background(), mixedTexts, "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := m.Embed(context.Background(), mixedTexts, "")
			if err != nil {
				errs <- err
				return
			}
			for i := range want {
				for d := range want[i] {
					if got[i][d] != want[i][d] {
						errs <- fmt.Errorf("text %d dim %d: %v != %v", i, d, got[i][d], want[i][d])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHostileInputs feeds what clients send by mistake or malice: each must
// give a correct result, never an error, a crash or a hang.
func TestHostileInputs(t *testing.T) {
	dir, _ := writeModel(t, tinyConfig(synthbert.HeadMaskedLM, 8), `{"task_type":"sparse_embedding","max_sequence_length":64}`)
	m := load(t, dir, LoadOptions{Threads: 1})
	inputs := []string{
		"", " \t\n ", strings.Repeat("x", 100_000), strings.Repeat("word ", 20_000),
		"invalid \xff\xfe utf-8", "nul\x00inside", "\x07\x1b[31mcontrol\u200b\ufeff", "[SEP] [CLS] [MASK] typed specials",
	}
	got, err := m.SparseEmbed(context.Background(), inputs, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if len(e.Tokens) == 0 {
			t.Errorf("input %d: no tokens", i)
		}
		for _, wt := range e.Tokens {
			if math.IsNaN(float64(wt.Weight)) || wt.Weight <= 0 {
				t.Fatalf("input %d: weight %v for %q", i, wt.Weight, wt.Token)
			}
		}
	}
	// A 100,000-character word is one [UNK] (WordPiece's 100-character
	// limit), so only the 20,000-word input is cut.
	if got[0].Truncated || got[2].Truncated || !got[3].Truncated {
		t.Errorf("Truncated flags = %v %v %v", got[0].Truncated, got[2].Truncated, got[3].Truncated)
	}
}

// TestLoadSentenceTransformersDirectory loads a directory laid out as the
// Hub exports a sentence-transformers model: no jetinfer.json at all.
func TestLoadSentenceTransformersDirectory(t *testing.T) {
	dir, ref := writeModel(t, tinyConfig(synthbert.HeadHidden, 9), "")
	files := map[string]string{
		"config.json":               `{"architectures":["BertModel"],"model_type":"bert","max_position_embeddings":64,"hidden_size":32}`,
		"modules.json":              `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]`,
		"1_Pooling/config.json":     `{"word_embedding_dimension":32,"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}`,
		"sentence_bert_config.json": `{"max_seq_length":32}`,
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := load(t, dir, LoadOptions{})
	want := Spec{Task: TaskTextEmbedding, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids"}, Output: "last_hidden_state",
		Pooling: PoolCLS, MaxSequenceLength: 32, Dimensions: 32, Similarity: "cosine"}
	if !reflect.DeepEqual(m.Spec(), want) {
		t.Fatalf("Spec = %+v; want %+v", m.Spec(), want)
	}
	text := strings.Repeat("tokens ", 40)
	got, err := m.Embed(context.Background(), []string{text}, "")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := m.tok.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc.IDs) != 32 || !enc.Truncated {
		t.Fatalf("encoding has %d tokens (truncated %v); want 32 from sentence_bert_config.json", len(enc.IDs), enc.Truncated)
	}
	cls := reference(t, ref, enc)[0]
	for d := range cls {
		if !near(float64(got[0][d]), float64(cls[d]), 1e-4) {
			t.Fatalf("dim %d = %v; CLS reference %v", d, got[0][d], cls[d])
		}
	}
}

// TestXLMRobertaPath runs the Unigram tokenizer with a graph that has no
// token_type_ids input, as multilingual-e5 (XLM-RoBERTa) exports do.
func TestXLMRobertaPath(t *testing.T) {
	const unigram = "tokenizer/testdata/unigram/tokenizer.json"
	tok, err := tokenizer.Load(tokenizer.Config{Path: unigram, MaxLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(synthbert.HeadHidden, 10)
	cfg.VocabSize, cfg.NoTokenTypeInput, cfg.TypeVocabSize = tok.VocabSize(), true, 1
	dir, ref := writeModel(t, cfg, `{"task_type":"text_embedding","pooling":"mean","normalize":false,"max_sequence_length":64,"prefix_strings":{"search":"query: ","ingest":"passage: "}}`)
	data, err := os.ReadFile(unigram)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, artifact.TokenizerFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := load(t, dir, LoadOptions{})
	if m.Spec().Inputs.TokenTypeIDs != "" {
		t.Fatalf("Inputs = %+v; want no token types", m.Spec().Inputs)
	}
	got, err := m.Embed(context.Background(), mixedTexts, InputIngest)
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range mixedTexts {
		enc, err := m.tok.Encode("passage: " + text)
		if err != nil {
			t.Fatal(err)
		}
		want := meanOf(reference(t, ref, enc))
		for d := range want {
			if !near(float64(got[i][d]), float64(want[d]), 1e-4) {
				t.Fatalf("text %d dim %d = %v; reference %v", i, d, got[i][d], want[d])
			}
		}
	}
}

// A decoder embedding model as Qwen3-Embedding is exported: position_ids
// input, causal attention, last-token pooling from 1_Pooling, left padding
// from tokenizer_config.json, prompts from config_sentence_transformers.json
// with a default one. Every text of a mixed batch equals the pure-Go forward
// pass of that text alone, on either padding side.
func TestDecoderEmbeddingMatchesReference(t *testing.T) {
	cfg := tinyConfig(synthbert.HeadHidden, 5)
	cfg.Decoder = true
	for _, side := range []string{"left", "right"} {
		t.Run(side, func(t *testing.T) {
			dir, ref := writeModel(t, cfg, `{"task_type":"text_embedding","max_sequence_length":64}`)
			for name, content := range map[string]string{
				"modules.json": `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},` +
					`{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},` +
					`{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]`,
				"1_Pooling/config.json":             `{"word_embedding_dimension":32,"pooling_mode_lasttoken":true}`,
				"config_sentence_transformers.json": `{"prompts":{"query":"Instruct: find the answer\nQuery:","document":""},"default_prompt_name":"query"}`,
				artifact.TokenizerConfigFile:        `{"padding_side":"` + side + `"}`,
			} {
				path := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m := load(t, dir, LoadOptions{Threads: 1, Batch: BatchConfig{MaxTokens: 200, MaxRows: 4}})
			spec := m.Spec()
			if spec.Pooling != PoolLastToken || spec.PadLeft != (side == "left") || spec.Inputs.PositionIDs != "position_ids" ||
				spec.DefaultPrompt != "Instruct: find the answer\nQuery:" || !spec.Normalize {
				t.Fatalf("spec %+v", spec)
			}
			for _, it := range []InputType{InputSearch, InputIngest, ""} {
				got, err := m.Embed(context.Background(), mixedTexts, it)
				if err != nil {
					t.Fatal(err)
				}
				for i, text := range mixedTexts {
					prompted := m.prefixed([]string{text}, it, RunOptions{})[0]
					if it == InputIngest && prompted != text || it != InputIngest && !strings.HasPrefix(prompted, "Instruct: ") {
						t.Fatalf("input type %q: %q", it, prompted)
					}
					enc, err := m.tok.Encode(prompted)
					if err != nil {
						t.Fatal(err)
					}
					positions := make([]int64, len(enc.IDs))
					mask := make([]int64, len(enc.IDs))
					for j := range positions {
						positions[j], mask[j] = int64(j), 1
					}
					out, err := ref.ForwardPositions([][]int64{enc.IDs}, [][]int64{mask}, [][]int64{positions})
					if err != nil {
						t.Fatal(err)
					}
					want := out[0][len(enc.IDs)-1]
					Normalize(want)
					for d := range want {
						if !near(float64(got[i][d]), float64(want[d]), 1e-4) {
							t.Fatalf("input type %q, text %d (%q) dim %d = %v; the last token's state alone %v", it, i, text, d, got[i][d], want[d])
						}
					}
				}
			}
			if st := m.Stats(); st.PaddedTokens.Load() <= st.RealTokens.Load() {
				t.Fatalf("no batch was padded (%d real, %d padded tokens): the padding side went untested", st.RealTokens.Load(), st.PaddedTokens.Load())
			}
		})
	}
}
