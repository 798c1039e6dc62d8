package test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/hfhub/hubtest"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/modelquant"
	"github.com/jetinfer/jetinfer/modelsource"
	"github.com/jetinfer/jetinfer/modelstore"
	"github.com/jetinfer/jetinfer/node"
)

// The repositories behind the built-in ids, in the layouts of the real ones
// (file names from their Hub listings), holding generated models.
const (
	e5Repo     = "intfloat/multilingual-e5-small"
	spladeRepo = "prithivida/Splade_PP_en_v1"
	rerankRepo = "Xenova/ms-marco-MiniLM-L-6-v2"
	int8Graph  = "onnx/model_qint8_avx512_vnni.onnx"
)

// fakeHub serves the three repositories; what a test must not download
// (the graphs no id uses, the PyTorch weights) is there too.
func fakeHub(t *testing.T) *hubtest.Hub {
	t.Helper()
	dir := t.TempDir()
	graph := func(tm testModel, seed uint64) []byte {
		t.Helper()
		tm.seed = seed
		p := filepath.Join(dir, "graph.onnx")
		if err := tm.writeGraph(p); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tok, err := os.ReadFile(testTokenizer)
	if err != nil {
		t.Fatal(err)
	}
	weights := []byte(strings.Repeat("safetensors", 100))
	h := hubtest.Start()
	t.Cleanup(h.Close)
	h.Add(hubtest.Repo{ID: e5Repo, Files: map[string][]byte{
		"onnx/model.onnx":           graph(denseModel, 102),
		int8Graph:                   graph(denseModel.quantized(), 202), // another model: the test tells which one answered
		"onnx/model_O4.onnx":        graph(denseModel, 302),
		"tokenizer.json":            tok,
		"config.json":               []byte(`{"architectures":["BertModel"],"model_type":"bert","hidden_size":32,"max_position_embeddings":512,"vocab_size":30522}`),
		"modules.json":              []byte(`[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]`),
		"1_Pooling/config.json":     []byte(`{"word_embedding_dimension":32,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true}`),
		"sentence_bert_config.json": []byte(`{"max_seq_length":512,"do_lower_case":false}`),
		"model.safetensors":         weights,
		"README.md":                 []byte("---\nlicense: mit\n---\n"),
	}})
	h.Add(hubtest.Repo{ID: spladeRepo, Files: map[string][]byte{
		"onnx/model.onnx":   graph(sparseModel, 101),
		"tokenizer.json":    tok,
		"config.json":       []byte(`{"architectures":["BertForMaskedLM"],"model_type":"bert","max_position_embeddings":512,"vocab_size":30522}`),
		"pytorch_model.bin": weights,
	}})
	h.Add(hubtest.Repo{ID: rerankRepo, Files: map[string][]byte{
		"onnx/model.onnx":           graph(rerankModel, 103),
		"onnx/model_quantized.onnx": graph(rerankModel, 203),
		"tokenizer.json":            tok,
		"config.json":               []byte(`{"architectures":["BertForSequenceClassification"],"model_type":"bert","max_position_embeddings":512,"id2label":{"0":"LABEL_0"}}`),
	}})
	return h
}

// fromHub makes a node get built-in models from the fake Hub only: an
// empty model repository and its own Hugging Face cache.
func fromHub(h *hubtest.Hub, hfCache string) func(*node.Config) {
	return func(c *node.Config) {
		c.ModelRepository = ""
		c.Hub = hfhub.Config{Endpoint: h.URL(), CacheDir: hfCache, Attempts: 3, Backoff: 10 * time.Millisecond, StallTimeout: 10 * time.Second}
	}
}

// hubReference loads a built-in id's model as the engine sees it when
// staged from the fake Hub outside any node (quantized as the worker does
// for the _linux-x86_64 ids): the reference answers.
func hubReference(t *testing.T, h *hubtest.Hub, modelID string) *inference.Model {
	t.Helper()
	table, err := modelsource.NewTable(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := table.Lookup(modelID)
	if !ok {
		t.Fatalf("%s is not built in", modelID)
	}
	client, err := hfhub.New(hfhub.Config{Endpoint: h.URL(), CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	staged, err := modelsource.StageHub(context.Background(), client, b.Source, b.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = staged.Close() })
	dir := staged.Dir
	if b.Int8 { // as the worker imports it: a float graph quantized
		int8Dir := t.TempDir()
		_, err := modelquant.Write(context.Background(), modelquant.Config{Runtime: testRuntime}, staged.Dir, int8Dir)
		switch {
		case err == nil:
			dir = int8Dir
		case !errors.Is(err, quantize.ErrAlreadyQuantized):
			t.Fatal(err)
		}
	}
	m, err := inference.LoadModel(context.Background(), testRuntime, dir, inference.LoadOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestDefaultEndpointsDownloadOnFirstUse: on a fresh node whose model
// repository is empty, the first request to each default endpoint
// downloads its model from the Hub (only the files the model needs, once),
// deploys it and answers what the engine computes on those files; a
// restart with an empty Hugging Face cache downloads nothing.
func TestDefaultEndpointsDownloadOnFirstUse(t *testing.T) {
	h := fakeHub(t)
	dataDir := t.TempDir()
	n := startNode(t, func(c *node.Config) {
		fromHub(h, t.TempDir())(c)
		c.DataDir = dataDir
	})
	const e5Body = `{"input":["a first request","works on a fresh machine"]}`
	cases := []struct {
		id, modelID, body string
	}{
		{config.DefaultE5ID, config.ModelE5SmallLinux, e5Body},
		{config.DefaultELSERID, config.ModelELSERLinux, `{"input":"sparse terms from a stand-in"}`},
		{config.DefaultRerankID, config.ModelRerankV1, `{"query":"which one","input":["this one","not that","another"]}`},
	}
	answers := map[string]string{}
	for _, c := range cases {
		r := n.do(t, "POST", "/_inference/"+c.id+"?timeout=2m", c.body)
		r.mustStatus(t, 200)
		answers[c.id] = r.body
	}
	for _, f := range []struct {
		repo, path string
		want       int
	}{
		{e5Repo, int8Graph, 1}, {e5Repo, "tokenizer.json", 1}, {e5Repo, "1_Pooling/config.json", 1},
		{e5Repo, "onnx/model.onnx", 0}, {e5Repo, "onnx/model_O4.onnx", 0}, {e5Repo, "model.safetensors", 0}, {e5Repo, "README.md", 0},
		{spladeRepo, "onnx/model.onnx", 1}, {spladeRepo, "pytorch_model.bin", 0},
		{rerankRepo, "onnx/model.onnx", 1}, {rerankRepo, "onnx/model_quantized.onnx", 0},
	} {
		if got := h.Downloads(f.repo, f.path); got != f.want {
			t.Errorf("%s %s downloaded %d times, want %d", f.repo, f.path, got, f.want)
		}
	}

	// What the engine computes on the Hub's files (staged again, outside
	// the node), and the x86-64 E5 id on the int8 graph, not model.onnx.
	for _, c := range cases {
		ep, _ := config.DefaultEndpoint(c.id)
		if want := directInfer(t, hubReference(t, h, c.modelID), ep, c.body); answers[c.id] != want {
			t.Fatalf("%s answered\n%s\nthe engine on the Hub's files says\n%s", c.id, answers[c.id], want)
		}
	}
	ep, _ := config.DefaultEndpoint(config.DefaultE5ID)
	if fp32 := directInfer(t, hubReference(t, h, config.ModelE5Small), ep, e5Body); fp32 == answers[config.DefaultE5ID] {
		t.Error("the default E5 endpoint answered with onnx/model.onnx; Elasticsearch's x86-64 id is the int8 graph")
	}
	// ELSER's x86-64 id runs the Hub's float graph quantized on import: not the float model's answer.
	ep, _ = config.DefaultEndpoint(config.DefaultELSERID)
	elserBody := `{"input":"sparse terms from a stand-in"}`
	if fp32 := directInfer(t, hubReference(t, h, config.ModelELSER), ep, elserBody); fp32 == answers[config.DefaultELSERID] {
		t.Error("the default ELSER endpoint answered with the float graph; its x86-64 id runs int8")
	}

	// The stats say where each model came from, what it stands in for, and the precision it runs in.
	r := n.do(t, "GET", "/_ml/trained_models/_stats", "")
	r.mustStatus(t, 200)
	var stats struct {
		Stats []struct {
			ModelID string `json:"model_id"`
			Source  struct {
				URI       string `json:"uri"`
				StandsIn  string `json:"stands_in_for"`
				Precision string `json:"precision"`
				Quantized *struct {
					From      string `json:"from"`
					Agreement struct {
						Measure string  `json:"measure"`
						Value   float64 `json:"value"`
						Bound   float64 `json:"bound"`
						Inputs  int     `json:"inputs"`
					} `json:"agreement"`
				} `json:"quantized"`
			} `json:"model_source"`
		} `json:"trained_model_stats"`
	}
	if err := json.Unmarshal([]byte(r.body), &stats); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{}
	for _, s := range stats.Stats {
		sources[s.ModelID] = s.Source.URI + " | " + s.Source.StandsIn + " | " + s.Source.Precision
		if q := s.Source.Quantized; q != nil {
			a := q.Agreement
			if a.Measure != "top20_overlap" || a.Bound != 0.9 || a.Value < a.Bound || a.Value >= 1 || a.Inputs != 50 {
				t.Errorf("%s: quantized with %+v", s.ModelID, a)
			}
			sources[s.ModelID] += " | from " + q.From
		}
	}
	elserFile := "hf://" + spladeRepo + "@" + h.Commit(spladeRepo) + "/onnx/model.onnx"
	for id, want := range map[string]string{
		config.ModelE5SmallLinux: "hf://" + e5Repo + "@" + h.Commit(e5Repo) + "/" + int8Graph + " |  | int8",
		config.ModelELSERLinux:   elserFile + " | Elastic's ELSER v2 (.elser_model_2) | int8 | from hf://" + spladeRepo + "/onnx/model.onnx",
		config.ModelRerankV1:     "hf://" + rerankRepo + "@" + h.Commit(rerankRepo) + "/onnx/model.onnx | Elastic Rerank (.rerank-v1, DeBERTa-v3) | float32",
	} {
		if sources[id] != want {
			t.Errorf("_stats source of %s: %q, want %q", id, sources[id], want)
		}
	}

	// A restart (same NATS data, empty caches) serves from the model store.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	before := len(h.Requests())
	n = startNode(t, func(c *node.Config) {
		fromHub(h, t.TempDir())(c)
		c.DataDir = dataDir
	})
	n.do(t, "POST", "/_inference/"+config.DefaultE5ID+"?timeout=2m", e5Body).expect(t, 200, answers[config.DefaultE5ID])
	if got := len(h.Requests()) - before; got != 0 {
		t.Errorf("the restarted node sent %d requests to the Hub", got)
	}
}

// TestBuiltInModelDownloadedOncePerCluster: two workers that deploy the
// same built-in model at once download it once, the other waiting for the
// model store; meanwhile PUT answers 408 and the stats show the download's
// progress.
func TestBuiltInModelDownloadedOncePerCluster(t *testing.T) {
	h := fakeHub(t)
	h.Slow("onnx/model.onnx", 4*time.Second)
	front := startNodeWith(t, func(c *node.Config) { c.Heartbeat = testHeartbeat }, nil)
	var workers []*testNode
	for _, name := range []string{"w1", "w2"} {
		settings := workerSettings(name, 1, front.NATSURL())
		workers = append(workers, startNodeWith(t, func(c *node.Config) {
			settings(c)
			fromHub(h, t.TempDir())(c) // each worker its own machine
		}, testRuntime))
	}
	js := connectJS(t, front.NATSURL())
	waitRegistered(t, js, 1, 2)

	body := `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":2,"num_threads":1}}`
	front.do(t, "PUT", "/_inference/text_embedding/e5-both?timeout=1s", body).expect(t, 408, esError(408, "status_exception",
		"Timed out after [1s] waiting for model deployment to start. Use the trained model stats API to track the state of the deployment."))

	// The stats show the download in progress (the fake Hub pauses halfway
	// through the graph).
	var total int64
	for _, f := range []string{"onnx/model.onnx", "tokenizer.json", "config.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"} {
		total += int64(len(h.File(e5Repo, f)))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Stats []struct {
				Deployment struct {
					State    string `json:"state"`
					Reason   string `json:"reason"`
					Download *struct {
						State  string `json:"state"`
						Source string `json:"source"`
						Done   int64  `json:"bytes_done"`
						Total  int64  `json:"bytes_total"`
					} `json:"model_download"`
				} `json:"deployment_stats"`
			} `json:"trained_model_stats"`
		}
		r := front.do(t, "GET", "/_ml/trained_models/e5-both/_stats", "")
		if err := json.Unmarshal([]byte(r.body), &st); err != nil || len(st.Stats) != 1 {
			t.Fatalf("stats %s: %v", r.body, err)
		}
		d := st.Stats[0].Deployment
		if dl := d.Download; dl != nil && dl.Done > 0 && dl.Done < total {
			if d.State != "starting" || dl.State != "downloading" || dl.Total != total || dl.Source != "hf://"+e5Repo+"/onnx/model.onnx" ||
				!strings.HasPrefix(d.Reason, "downloading model [.multilingual-e5-small] from [hf://"+e5Repo+"/onnx/model.onnx]: ") {
				t.Fatalf("download in progress reported as %s", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download in progress seen: %s", r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	front.do(t, "POST", "/_inference/e5-both?timeout=2m", `{"input":"after the download"}`).mustStatus(t, 200)
	running(t, js, 1, "e5-both", map[string]int{"w1": 1, "w2": 1})
	if got := h.Downloads(e5Repo, "onnx/model.onnx"); got != 1 {
		t.Errorf("onnx/model.onnx downloaded %d times by two workers, want 1", got)
	}
	// The bytes downloaded, as the workers' metrics count them: the model
	// once, by one of them.
	var downloaded float64
	for _, w := range workers {
		if v := value(scrape(t, w.MetricsAddr()), "jetinfer_model_download_bytes_total", "model_id=.multilingual-e5-small"); v > 0 {
			downloaded += v
		}
	}
	if downloaded != float64(total) {
		t.Errorf("jetinfer_model_download_bytes_total over both workers = %v; want %d", downloaded, total)
	}
}

// TestBrokenDownloadIsReported: bytes that do not match the Hub's checksum
// fail the deployment with the cause, in Elasticsearch's envelope, and
// leave nothing in the model store.
func TestBrokenDownloadIsReported(t *testing.T) {
	h := fakeHub(t)
	h.Corrupt(int8Graph, 1)
	n := startNode(t, fromHub(h, t.TempDir()))
	// Fixed allocations: no plan change retries the deployment, only the
	// requests (or the deployment's own retry, 30 s after the failure).
	r := n.do(t, "PUT", "/_inference/text_embedding/e5-fixed?timeout=2m",
		`{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small_linux-x86_64","num_allocations":1,"num_threads":1}}`)
	var e struct {
		Error struct {
			Type     string `json:"type"`
			Reason   string `json:"reason"`
			CausedBy struct {
				Reason string `json:"reason"`
			} `json:"caused_by"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatal(err)
	}
	if r.status != 500 || e.Error.Type != "status_exception" ||
		e.Error.Reason != "Could not download model [.multilingual-e5-small_linux-x86_64] from [hf://"+e5Repo+"/"+int8Graph+"]" ||
		!strings.Contains(e.Error.CausedBy.Reason, "downloaded file does not match its checksum: content hashes to") {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	store, err := modelstore.Open(context.Background(), connectJS(t, n.NATSURL()), modelstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(context.Background(), config.ModelE5SmallLinux); !errors.Is(err, modelstore.ErrNotFound) {
		t.Errorf("a model whose download failed is in the model store: %v", err)
	}

	// The next requests retry the download (the Hub serves good bytes
	// now): well before the deployment's own retry, 30 s after the failure.
	failed := time.Now()
	for {
		r := n.do(t, "POST", "/_inference/e5-fixed?timeout=1m", `{"input":"x"}`)
		if r.status == 200 {
			break
		}
		if r.status != 500 || time.Since(failed) > 25*time.Second {
			t.Fatalf("retrying requests: %d %s after %s", r.status, r.body, time.Since(failed))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := h.Downloads(e5Repo, int8Graph); n != 2 {
		t.Errorf("%s fetched %d times, want 2 (the corrupt one, the retry)", int8Graph, n)
	}
}

// TestWaitingWorkerReportsTheDownloadFailure: the worker that waited for
// another's download that failed reports the same Elasticsearch error, and
// neither downloads again.
func TestWaitingWorkerReportsTheDownloadFailure(t *testing.T) {
	h := fakeHub(t)
	h.Slow("onnx/model.onnx", 5*time.Second) // both workers start before it fails, even on a loaded machine
	h.Corrupt("onnx/model.onnx", 1)
	front := startNodeWith(t, func(c *node.Config) { c.Heartbeat = testHeartbeat }, nil)
	for _, name := range []string{"w1", "w2"} {
		settings := workerSettings(name, 1, front.NATSURL())
		startNodeWith(t, func(c *node.Config) {
			settings(c)
			fromHub(h, t.TempDir())(c)
		}, testRuntime)
	}
	waitRegistered(t, connectJS(t, front.NATSURL()), 1, 2)
	body := `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":2,"num_threads":1}}`
	r := front.do(t, "PUT", "/_inference/text_embedding/e5-broken?timeout=2m", body)
	const reason = "Could not download model [.multilingual-e5-small] from [hf://" + e5Repo + "/onnx/model.onnx]"
	if r.status != 500 || !strings.Contains(r.body, `"reason":"`+reason+`"`) || !strings.Contains(r.body, "does not match its checksum") {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	// Both workers report it (the second as the first did), and the graph
	// was fetched once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := front.do(t, "GET", "/_ml/trained_models/e5-broken/_stats", "").body
		if strings.Count(st, `"routing_state":{"routing_state":"failed","reason":"`+reason+`"}`) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers do not both report the failure: %s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := h.Downloads(e5Repo, "onnx/model.onnx"); n != 1 {
		t.Errorf("onnx/model.onnx fetched %d times, want 1", n)
	}
}

// TestModelRepositoryMirror: --model-repository as an http(s) URL is the
// source of every built-in model, as xpack.ml.model_repository is for
// clusters without internet access; a model the mirror lacks is not found,
// with the cause.
func TestModelRepositoryMirror(t *testing.T) {
	mirror := httptest.NewServer(http.FileServer(http.Dir(modelRepo)))
	t.Cleanup(mirror.Close)
	n := startNode(t, func(c *node.Config) { c.ModelRepository = mirror.URL + "/" })
	const body = `{"input":"from the mirror"}`
	ep, _ := config.DefaultEndpoint(config.DefaultELSERID)
	n.do(t, "POST", "/_inference/"+config.DefaultELSERID+"?timeout=2m", body).
		expect(t, 200, directInfer(t, directModel(t, config.ModelELSERLinux), ep, body))

	empty := httptest.NewServer(http.FileServer(http.Dir(t.TempDir())))
	t.Cleanup(empty.Close)
	n = startNode(t, func(c *node.Config) { c.ModelRepository = empty.URL })
	n.do(t, "POST", "/_inference/"+config.DefaultRerankID+"?timeout=2m", `{"query":"q","input":["a"]}`).expect(t, 404, esErrorCausedBy(404, "resource_not_found_exception",
		"Could not start the Elastic Reranker Endpoint due to [Could not deploy model [.rerank-v1] as the model cannot be found.]",
		"resource_not_found_exception", "no ONNX graph in the repository: "+empty.URL+"/.rerank-v1/model.onnx is not on the mirror"))
}
