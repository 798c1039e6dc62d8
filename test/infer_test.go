package test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/node"
)

const rerankBody = `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1}}`

// TestPostEachTaskType: POST _inference answers through the infer subject
// exactly what the engine answers for each task type, large requests
// included.
func TestPostEachTaskType(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/text_embedding/dense", e5Body).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/sparse_embedding/sparse", elserBody).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/rerank/ranker", rerankBody).mustStatus(t, 200)
	dense, sparse, ranker := directModel(t, ".multilingual-e5-small"), directModel(t, ".elser_model_2"), directModel(t, ".rerank-v1")
	denseEP := parseEndpoint(t, "dense", config.TextEmbedding, e5Body)
	sparseEP := parseEndpoint(t, "sparse", config.SparseEmbedding, elserBody)
	rerankEP := parseEndpoint(t, "ranker", config.Rerank, rerankBody)

	for _, body := range []string{
		`{"input":"hello world"}`,
		`{"input":["hello world","naïve café 🙂"],"input_type":"search"}`,
		`{"input":["hello world","naïve café 🙂"],"input_type":"ingest"}`,
	} {
		n.do(t, "POST", "/_inference/text_embedding/dense", body).expect(t, 200, directInfer(t, dense, denseEP, body))
	}
	// Twenty inputs of a sparse model whose every token has a weight: a
	// reply larger than one NATS message, sent in parts.
	var inputs []string
	for i := range 20 {
		inputs = append(inputs, document(i))
	}
	in, _ := json.Marshal(inputs)
	body := `{"input":` + string(in) + `}`
	want := directInfer(t, sparse, sparseEP, body)
	if len(want) < 8<<20 {
		t.Fatalf("the sparse answer is only %d bytes; the test wants one larger than a message", len(want))
	}
	// Timeouts of minutes on the large requests: under the race detector on
	// a loaded 2-core machine they outlast the default 30 s (408 seen).
	n.do(t, "POST", "/_inference/sparse?timeout=5m", body).expect(t, 200, want)

	rr := `{"query":"quick fox","input":["a quick brown fox","a lazy dog","seven wizards","the fox jumps"],"top_n":3}`
	n.do(t, "POST", "/_inference/rerank/ranker", rr).expect(t, 200, directInfer(t, ranker, rerankEP, rr))
	rr = `{"query":"quick fox","input":["a quick brown fox","a lazy dog"],"return_documents":false}`
	n.do(t, "POST", "/_inference/ranker", rr).expect(t, 200, directInfer(t, ranker, rerankEP, rr))

	// 150 inputs are split into parts server-side and put back together.
	inputs = inputs[:0]
	for i := range 150 {
		inputs = append(inputs, document(i)[:min(len(document(i)), 300)])
	}
	in, _ = json.Marshal(inputs)
	body = `{"input":` + string(in) + `,"input_type":"search"}`
	r := n.do(t, "POST", "/_inference/dense?timeout=5m", body)
	r.mustStatus(t, 200)
	if err := sameFloats(r.body, directInfer(t, dense, denseEP, body)); err != nil {
		t.Fatalf("split dense request: %v", err)
	}
	body = `{"query":"quick fox","input":` + string(in) + `,"top_n":7}`
	r = n.do(t, "POST", "/_inference/ranker?timeout=5m", body)
	r.mustStatus(t, 200)
	if err := sameFloats(r.body, directInfer(t, ranker, rerankEP, body)); err != nil {
		t.Fatalf("split rerank request: %v", err)
	}

	n.do(t, "POST", "/_inference/dense?timeout=1nanos", `{"input":"x"}`).expect(t, 408,
		esError(408, "status_exception", "timeout [1nanos] waiting for inference result"))
}

// sameFloats compares two JSON documents equal but for numbers, which may
// differ by 1e-5.
func sameFloats(got, want string) error {
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		return fmt.Errorf("%.200s: %w", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return err
	}
	return compareJSON("$", g, w)
}

func compareJSON(path string, g, w any) error {
	switch wv := w.(type) {
	case float64:
		gv, ok := g.(float64)
		if !ok || math.Abs(gv-wv) > 1e-5 {
			return fmt.Errorf("%s = %v, want %v", path, g, w)
		}
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			return fmt.Errorf("%s: %d items, want %d", path, len(gv), len(wv))
		}
		for i := range wv {
			if err := compareJSON(fmt.Sprintf("%s[%d]", path, i), gv[i], wv[i]); err != nil {
				return err
			}
		}
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok || len(gv) != len(wv) {
			return fmt.Errorf("%s: %v, want %v", path, g, w)
		}
		for k := range wv {
			if err := compareJSON(path+"."+k, gv[k], wv[k]); err != nil {
				return err
			}
		}
	default:
		if g != w {
			return fmt.Errorf("%s = %v, want %v", path, g, w)
		}
	}
	return nil
}

// TestDefaultEndpointsDeployOnFirstUse: the reserved endpoints start their
// model when the first request or document arrives for them.
func TestDefaultEndpointsDeployOnFirstUse(t *testing.T) {
	n := startNode(t, nil)
	e5 := directModel(t, ".multilingual-e5-small_linux-x86_64")
	e5EP, _ := config.DefaultEndpoint(".multilingual-e5-small-elasticsearch")
	body := `{"input":["first use"],"input_type":"search"}`
	n.do(t, "POST", "/_inference/.multilingual-e5-small-elasticsearch", body).expect(t, 200, directInfer(t, e5, e5EP, body))

	js := connectJS(t, n.NATSURL())
	res := watchResults(t, js, ".elser-2-elasticsearch")
	publishDocs(t, js, ".elser-2-elasticsearch", []string{"first"}, func(id string) []byte { return docBody(id, "a document for ELSER.") })
	res.until(1, time.Minute)
	if !strings.HasPrefix(res.byID["first"], `{"inference_id":".elser-2-elasticsearch","model_settings":{"service":"elasticsearch","task_type":"sparse_embedding"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1},"chunks":[[{"start_offset":0,"end_offset":21,"embeddings":{`) {
		t.Fatalf("result %.300s", res.byID["first"])
	}
	// Deployed, the adaptive endpoint shows its one allocation.
	r := n.do(t, "GET", "/_inference/.elser-2-elasticsearch", "")
	if !strings.Contains(r.body, `"service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2_linux-x86_64"`) {
		t.Fatalf("GET: %s", r.body)
	}
}

// TestModelNotFound: a deployment whose model is nowhere (not in the model
// repository, and the Hub offline with an empty cache) fails with
// Elasticsearch's messages and the cause, and the endpoint stays defined.
func TestModelNotFound(t *testing.T) {
	hfCache := t.TempDir()
	n := startNode(t, func(c *node.Config) {
		c.ModelRepository = t.TempDir()
		c.Hub.CacheDir = hfCache
	})
	offline := func(repo string) string {
		return "offline mode and not in the cache: " + repo + "@main (HF_HUB_OFFLINE is set and the cache " + hfCache + " has no snapshot of it)"
	}
	elser := esErrorCausedBy(404, "resource_not_found_exception",
		"Could not start the ELSER service as the ELSER model for this platform cannot be found. ELSER needs to be downloaded before it can be started.",
		"resource_not_found_exception", offline("prithivida/Splade_PP_en_v1"))
	n.do(t, "PUT", "/_inference/sparse_embedding/no-elser", elserBody).expect(t, 404, elser)
	n.do(t, "GET", "/_inference/no-elser", "").mustStatus(t, 200)
	n.do(t, "POST", "/_inference/no-elser", `{"input":"x"}`).expect(t, 404, elser)
	n.do(t, "POST", "/_inference/.elser-2-elasticsearch", `{"input":"x"}`).expect(t, 404, elser)
	n.do(t, "PUT", "/_inference/rerank/no-rerank", rerankBody).expect(t, 404, esErrorCausedBy(404, "resource_not_found_exception",
		"Could not start the Elastic Reranker Endpoint due to [Could not deploy model [.rerank-v1] as the model cannot be found.]",
		"resource_not_found_exception", offline("Xenova/ms-marco-MiniLM-L-6-v2")))
	n.do(t, "PUT", "/_inference/text_embedding/no-model", `{"service":"elasticsearch","service_settings":{"model_id":"my-model","num_allocations":1,"num_threads":1}}`).expect(t, 400,
		esError(400, "status_exception", "Error parsing request config, model id does not match any models available on this platform. Was [my-model]. You may need to load it into the cluster using eland."))
	n.do(t, "PUT", "/_inference/text_embedding/slow?timeout=1nanos", strings.Replace(e5Body, ".multilingual-e5-small", ".multilingual-e5-small_linux-x86_64", 1)).expect(t, 408,
		esError(408, "status_exception", "Timed out after [1nanos] waiting for model deployment to start. Use the trained model stats API to track the state of the deployment."))
}

// TestSearchQueueFull: beyond the queue capacity, requests are refused with
// Elasticsearch's 429 rather than queued without bound.
func TestSearchQueueFull(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.QueueCapacity = 2 })
	n.do(t, "PUT", "/_inference/text_embedding/full", strings.Replace(e5Body, `"num_allocations":2`, `"num_allocations":1`, 1)).mustStatus(t, 200)
	// The stats report the capacity the node was given, not the default.
	r := n.do(t, "GET", "/_ml/trained_models/_stats", "")
	var stats modelStatsBody
	if err := json.Unmarshal([]byte(r.body), &stats); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	found := false
	for _, s := range stats.Stats {
		if s.Deployment.DeploymentID == "full" {
			found = true
			if s.Deployment.Queue != 2 {
				t.Errorf("stats report queue_capacity %d; want 2", s.Deployment.Queue)
			}
		}
	}
	if !found {
		t.Fatalf("no deployment stats of full: %s", r.body)
	}
	var inputs []string
	for i := range 64 {
		inputs = append(inputs, document(5*i+4))
	}
	in, _ := json.Marshal(inputs)
	body := `{"input":` + string(in) + `}`
	const clients = 24
	responses := make([]response, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The four served wait their turn: a timeout of minutes, so
			// that only the queue refuses requests.
			responses[i] = n.do(t, "POST", "/_inference/full?timeout=5m", body)
		}()
	}
	wg.Wait()
	rejected := 0
	for _, r := range responses {
		switch r.status {
		case 200:
		case 429:
			rejected++
			r.expect(t, 429, esError(429, "es_rejected_execution_exception", "inference process queue is full. Unable to execute command"))
		default:
			t.Fatalf("status %d: %.300s", r.status, r.body)
		}
	}
	// One allocation (two lanes) and two queue places hold at most four.
	if rejected < clients-4 {
		t.Fatalf("%d of %d requests refused; want at least %d", rejected, clients, clients-4)
	}
}

// TestRerankLongDocumentsByChunk: an Elastic Rerank endpoint defined with
// long_document_strategy chunk shows its settings and ranks long documents
// as the engine does with them, through NATS and across request parts.
func TestRerankLongDocumentsByChunk(t *testing.T) {
	n := startNode(t, nil)
	body := `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1,"long_document_strategy":"chunk","max_chunks_per_doc":2}}`
	n.do(t, "PUT", "/_inference/rerank/long-ranker", body).mustStatus(t, 200)
	n.do(t, "GET", "/_inference/long-ranker", "").expect(t, 200,
		`{"endpoints":[{"inference_id":"long-ranker","task_type":"rerank","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".rerank-v1","long_document_strategy":"chunk","max_chunks_per_doc":2},"task_settings":{"return_documents":true}}]}`)
	ep := parseEndpoint(t, "long-ranker", config.Rerank, body)
	var inputs []string
	for i := range 70 {
		inputs = append(inputs, document(i))
	}
	in, _ := json.Marshal(inputs)
	req := `{"query":"quick fox","input":` + string(in) + `,"top_n":5}`
	r := n.do(t, "POST", "/_inference/long-ranker?timeout=5m", req)
	r.mustStatus(t, 200)
	if err := sameFloats(r.body, directInfer(t, directModel(t, ".rerank-v1"), ep, req)); err != nil {
		t.Fatalf("chunked rerank over HTTP: %v", err)
	}
	n.do(t, "PUT", "/_inference/rerank/bad-ranker", strings.Replace(body, `"chunk"`, `"truncate"`, 1)).expect(t, 400,
		esError(400, "validation_exception", "Validation Failed: 1: The [max_chunks_per_doc] setting requires [long_document_strategy] to be set to [chunk];"))
}
