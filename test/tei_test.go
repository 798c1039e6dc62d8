package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/tokenizer"
)

// TestTEIRoutes: each endpoint is a Text Embeddings Inference server under
// /tei/<inference_id>: TEI's documented requests (README, quick tour) get
// the engine's results in TEI's shapes, its options (normalize, dimensions,
// truncate, truncation_direction, prompt_name, raw_scores, return_text,
// add_special_tokens) do what TEI does, and failures come in TEI's error
// body with TEI's statuses.
func TestTEIRoutes(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/text_embedding/dense", e5Body).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/sparse_embedding/sparse", elserBody).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/rerank/ranker", rerankBody).mustStatus(t, 200)
	ctx := context.Background()
	dense, sparse, ranker := directModel(t, ".multilingual-e5-small"), directModel(t, ".elser_model_2"), directModel(t, ".rerank-v1")
	tok, err := tokenizer.Load(tokenizer.Config{Path: testTokenizer, MaxLength: 512})
	if err != nil {
		t.Fatal(err)
	}

	// README: POST /embed {"inputs":"What is Deep Learning?"}; the quick
	// tour's batch. No input type: no prefix.
	for _, inputs := range [][]string{{"What is Deep Learning?"}, {"Today is a nice day", "I like you"}} {
		body := `{"inputs":"What is Deep Learning?"}`
		if len(inputs) > 1 {
			body = `{"inputs":["Today is a nice day", "I like you"]}`
		}
		want, err := dense.Embed(ctx, inputs, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := teiFloats(t, n.do(t, "POST", "/tei/dense/embed", body)); !equalVectors(got, want) {
			t.Fatalf("embed %s = %v…; want the engine's %v…", body, got[0][:3], want[0][:3])
		}
	}
	// normalize false: the pooled vectors before normalization; dimensions:
	// the first values, normalized again.
	want, err := dense.Embed(ctx, []string{"hello world"}, "")
	if err != nil {
		t.Fatal(err)
	}
	raw := teiFloats(t, n.do(t, "POST", "/tei/dense/embed", `{"inputs":["hello world"],"normalize":false}`))[0]
	if nr := vectorNorm(raw); math.Abs(nr-1) < 1e-3 || !closeVectors(scaled(raw, 1/nr), want[0], 1e-6) {
		t.Fatalf("normalize false: norm %v, direction %v…; want a norm other than 1 in the direction of %v…", nr, raw[:3], want[0][:3])
	}
	cut := teiFloats(t, n.do(t, "POST", "/tei/dense/embed", `{"inputs":"hello world","dimensions":8}`))[0]
	if !closeVectors(cut, scaled(want[0][:8], 1/vectorNorm(want[0][:8])), 1e-6) {
		t.Fatalf("dimensions 8 = %v; want the first 8 values normalized", cut)
	}
	// prompt_name: the model's query prefix, as input_type search.
	query, err := dense.Embed(ctx, []string{"hello world"}, inference.InputSearch)
	if err != nil {
		t.Fatal(err)
	}
	if got := teiFloats(t, n.do(t, "POST", "/tei/dense/embed", `{"inputs":"hello world","prompt_name":"query"}`)); !equalVectors(got, query) {
		t.Fatalf("prompt_name query: %v…; want %v…", got[0][:3], query[0][:3])
	}
	// truncate false refuses what does not fit, with its token count;
	// truncation_direction left keeps the end.
	long := strings.Repeat("many words ", 300)
	count, err := tok.Count(long)
	if err != nil {
		t.Fatal(err)
	}
	n.do(t, "POST", "/tei/dense/embed", `{"inputs":"`+long+`","truncate":false}`).expectOther(t, 422,
		fmt.Sprintf(`{"error":"Input validation error: `+"`inputs`"+` must have less than 512 tokens. Given: %d","error_type":"Validation"}`, count))
	tail, err := dense.Embed(ctx, []string{strings.Repeat("many words ", 255)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := teiFloats(t, n.do(t, "POST", "/tei/dense/embed", `{"inputs":"start `+long+`","truncation_direction":"Left"}`)); !equalVectors(got, tail) {
		t.Fatalf("truncation_direction Left: not the embedding of the last 510 tokens")
	}

	// embed_sparse (README's request): the engine's weights by vocabulary
	// id, increasing.
	embs, err := sparse.SparseEmbed(ctx, []string{"I like you."}, "")
	if err != nil {
		t.Fatal(err)
	}
	r := n.do(t, "POST", "/tei/sparse/embed_sparse", `{"inputs":"I like you."}`)
	r.mustStatus(t, 200)
	var values [][]struct {
		Index int64   `json:"index"`
		Value float32 `json:"value"`
	}
	if err := json.Unmarshal([]byte(r.body), &values); err != nil || len(values) != 1 || len(values[0]) != len(embs[0].Tokens) {
		t.Fatalf("embed_sparse %s: %v; want %d values", r.body, err, len(embs[0].Tokens))
	}
	byID := map[int64]float32{}
	for _, wt := range embs[0].Tokens {
		byID[wt.ID] = wt.Weight
	}
	for i, v := range values[0] {
		if byID[v.Index] != v.Value || i > 0 && values[0][i-1].Index >= v.Index {
			t.Fatalf("embed_sparse value %d = %+v; want the engine's weight %v, by increasing index", i, v, byID[v.Index])
		}
	}

	// rerank (README's request): the sigmoid of the model's logits unless
	// raw_scores, best first, texts when return_text.
	texts := []string{"Deep Learning is not...", "Deep learning is..."}
	logits, err := ranker.Rerank(ctx, "What is Deep Learning?", texts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body  string
		score func(float32) float32
		text  bool
	}{
		{`{"query":"What is Deep Learning?","texts":["Deep Learning is not...","Deep learning is..."]}`, sigmoid32, false},
		{`{"query":"What is Deep Learning?","texts":["Deep Learning is not...","Deep learning is..."],"raw_scores":true,"return_text":true}`, func(x float32) float32 { return x }, true},
	} {
		r := n.do(t, "POST", "/tei/ranker/rerank", c.body)
		r.mustStatus(t, 200)
		var ranks []struct {
			Index int     `json:"index"`
			Text  *string `json:"text"`
			Score float32 `json:"score"`
		}
		if err := json.Unmarshal([]byte(r.body), &ranks); err != nil || len(ranks) != 2 {
			t.Fatalf("rerank %s: %v", r.body, err)
		}
		for i, rk := range ranks {
			if rk.Score != c.score(logits[rk.Index]) || i > 0 && ranks[i-1].Score < rk.Score || (rk.Text != nil) != c.text || c.text && *rk.Text != texts[rk.Index] {
				t.Fatalf("rerank %s: %s; logits %v", c.body, r.body, logits)
			}
		}
	}

	// tokenize: ids, the text at each token's byte offsets, special tokens
	// with null offsets; without special tokens; with a prompt.
	n.do(t, "POST", "/tei/dense/tokenize", `{"inputs":"Héllo, world!"}`).expectOther(t, 200,
		`[[{"id":101,"text":"[CLS]","special":true,"start":null,"stop":null},{"id":7592,"text":"Héllo","special":false,"start":0,"stop":6},`+
			`{"id":1010,"text":",","special":false,"start":6,"stop":7},{"id":2088,"text":"world","special":false,"start":8,"stop":13},`+
			`{"id":999,"text":"!","special":false,"start":13,"stop":14},{"id":102,"text":"[SEP]","special":true,"start":null,"stop":null}]]`)
	n.do(t, "POST", "/tei/ranker/tokenize", `{"inputs":["a b","c"],"add_special_tokens":false}`).expectOther(t, 200,
		`[[{"id":1037,"text":"a","special":false,"start":0,"stop":1},{"id":1038,"text":"b","special":false,"start":2,"stop":3}],`+
			`[{"id":1039,"text":"c","special":false,"start":0,"stop":1}]]`)
	n.do(t, "POST", "/tei/dense/tokenize", `{"inputs":"a","prompt_name":"passage","add_special_tokens":false}`).expectOther(t, 200,
		`[[{"id":6019,"text":"passage","special":false,"start":0,"stop":7},{"id":1024,"text":":","special":false,"start":7,"stop":8},`+
			`{"id":1037,"text":"a","special":false,"start":9,"stop":10}]]`)

	// info: the endpoint's model as its workers loaded it.
	n.do(t, "GET", "/tei/dense/info", "").expectOther(t, 200, `{"model_id":".multilingual-e5-small","model_sha":null,"model_dtype":"float32",`+
		`"served_model_name":"dense","model_type":{"embedding":{"pooling":"mean"}},"max_concurrent_requests":`+strconv.Itoa(config.DefaultQueueCapacity)+
		`,"max_input_length":512,"max_batch_tokens":`+strconv.Itoa(inference.DefaultBatch().MaxTokens)+`,"max_batch_requests":null,`+
		`"max_client_batch_size":2048,"auto_truncate":true,"tokenization_workers":2,"version":"`+testBuildVersion(t)+`","sha":null,"docker_label":null}`)
	r = n.do(t, "GET", "/tei/sparse/info", "")
	if r.status != 200 || !strings.Contains(r.body, `"model_type":{"embedding":{"pooling":"splade"}}`) {
		t.Fatalf("sparse info: %d %s", r.status, r.body)
	}
	r = n.do(t, "GET", "/tei/ranker/info", "")
	if r.status != 200 || !strings.Contains(r.body, `"model_type":{"reranker":{"id2label":{"0":"LABEL_0"},"label2id":{"LABEL_0":0}}}`) {
		t.Fatalf("ranker info: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/tei/dense/health", "/tei/dense"} {
		if r := n.do(t, "GET", path, ""); r.status != 200 || r.body != "" {
			t.Fatalf("GET %s: %d %q", path, r.status, r.body)
		}
	}
	// The base URL and /invocations, which TEI clients post to, answer as
	// the endpoint's task's route.
	for _, c := range []struct{ path, route, body string }{
		{"/tei/dense", "/tei/dense/embed", `{"inputs":"What is Deep Learning?","normalize":false}`},
		{"/tei/sparse/invocations", "/tei/sparse/embed_sparse", `{"inputs":"I like you."}`},
		{"/tei/ranker", "/tei/ranker/rerank", `{"query":"q","texts":["a","b"],"return_text":true}`},
	} {
		want := n.do(t, "POST", c.route, c.body)
		want.mustStatus(t, 200)
		n.do(t, "POST", c.path, c.body).expectOther(t, 200, want.body)
	}

	// TEI's errors.
	many := `{"inputs":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 2049), ",") + `]}`
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/tei/dense/embed", `{"inputs":""}`, 400, `{"error":"Input validation error: ` + "`inputs`" + ` cannot be empty","error_type":"Empty"}`},
		{"POST", "/tei/dense/embed", `{"inputs":[]}`, 400, `{"error":"Input validation error: ` + "`inputs`" + ` cannot be empty","error_type":"Empty"}`},
		{"POST", "/tei/dense/embed", many, 422, `{"error":"batch size 2049 > maximum allowed batch size 2048","error_type":"Validation"}`},
		{"POST", "/tei/dense/embed", `{}`, 422, `{"error":"Failed to deserialize the JSON body into the target type: missing field ` + "`inputs`" + `","error_type":"Validation"}`},
		{"POST", "/tei/dense/embed", `{"inputs":"x","truncation_direction":"LEFT"}`, 422,
			`{"error":"Failed to deserialize the JSON body into the target type: truncation_direction: unknown variant ` + "`LEFT`, expected one of `Left`, `left`, `Right`, `right`" + `","error_type":"Validation"}`},
		{"POST", "/tei/dense/embed", `{"inputs":"x","dimensions":0}`, 422, `{"error":"Input validation error: ` + "`dimensions`" + ` should be positive","error_type":"Validation"}`},
		{"POST", "/tei/dense/embed", `{"inputs":"x","dimensions":33}`, 422, `{"error":"Input validation error: ` + "`dimensions`" + ` should be smaller than the maximum embedding dimension.","error_type":"Validation"}`},
		{"POST", "/tei/dense/embed", `{"inputs":"x","prompt_name":"code"}`, 422,
			`{"error":"Input validation error: ` + "`default-prompt-name` is set to `code`" + ` but it was not found in the Sentence Transformers prompts. Available prompts: [\"passage\", \"query\"]","error_type":"Validation"}`},
		{"POST", "/tei/dense/embed", `{"inputs":[1,2,3]}`, 422, `{"error":"Input validation error: token ids as ` + "`inputs`" + ` are not supported: send texts","error_type":"Validation"}`},
		{"POST", "/tei/sparse/embed", `{"inputs":"x"}`, 424, `{"error":"Backend error: Model is not an embedding model","error_type":"Backend"}`},
		{"POST", "/tei/dense/embed_sparse", `{"inputs":"x"}`, 424, `{"error":"Backend error: Model is not an embedding model with SPLADE pooling","error_type":"Backend"}`},
		{"POST", "/tei/dense/rerank", `{"query":"q","texts":["a"]}`, 424, `{"error":"Backend error: model is not a re-ranker model","error_type":"Backend"}`},
		{"POST", "/tei/ranker/rerank", `{"query":"q","texts":[]}`, 400, `{"error":"` + "`texts`" + ` cannot be empty","error_type":"Empty"}`},
		{"POST", "/tei/nope/embed", `{"inputs":"x"}`, 404, `{"error":"Inference endpoint not found [nope]","error_type":"Validation"}`},
		{"GET", "/tei/nope/health", "", 404, `{"error":"Inference endpoint not found [nope]","error_type":"Validation"}`},
		{"GET", "/tei/dense/embed", "", 405, `{"error":"Incorrect HTTP method for uri [/tei/dense/embed] and method [GET], allowed: [POST]","error_type":"Validation"}`},
	} {
		n.do(t, c.method, c.path, c.body).expectOther(t, c.status, c.want)
	}
	req, err := http.NewRequest("POST", n.base+"/tei/dense/embed", strings.NewReader(`{"inputs":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	send(t, req).expectOther(t, 415, `{"error":"Expected request with `+"`Content-Type: application/json`"+`","error_type":"Validation"}`)
}

func teiFloats(t *testing.T, r response) [][]float32 {
	t.Helper()
	r.mustStatus(t, 200)
	var out [][]float32
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	return out
}

func equalVectors(got, want [][]float32) bool {
	return slices.EqualFunc(got, want, func(a, b []float32) bool { return slices.Equal(a, b) })
}

// testBuildVersion is the version the in-process node reports as TEI's
// version: this test binary's module version.
func testBuildVersion(t *testing.T) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info")
	}
	return bi.Main.Version
}

func closeVectors(got, want []float32, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol {
			return false
		}
	}
	return true
}

func vectorNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func scaled(v []float32, k float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * k)
	}
	return out
}

func sigmoid32(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }
