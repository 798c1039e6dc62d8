package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/node"
)

// scrape reads a node's /metrics and parses it as Prometheus does.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return families
}

// value is the value of the series of family whose labels include want
// (name=value pairs); for a histogram, its count. -1 when there is none.
func value(families map[string]*dto.MetricFamily, family string, want ...string) float64 {
	f := families[family]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// TestMetricsCountTheWork: after a known workload (documents, one of them
// poison, search requests, a bad request) the scraped counters are those
// numbers.
func TestMetricsCountTheWork(t *testing.T) {
	// Two processors: the endpoint measured and one with a fixed
	// allocation hold them, so a request to a third, at zero, can never be
	// served: Elasticsearch's 429, at once.
	n := startNode(t, func(c *node.Config) { c.Processors = 2 })
	const id = "metered"
	n.do(t, "PUT", "/_inference/text_embedding/"+id+"?timeout=2m",
		`{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_threads":1,`+
			`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":1,"max_number_of_allocations":1}},"chunking_settings":{"strategy":"none"}}`).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	res := watchResults(t, js, id)
	const docs, requests = 7, 3
	ids := docIDs(docs)
	publishDocs(t, js, id, ids, func(id string) []byte { return docBody(id, docText(id)) })
	publishDocs(t, js, id, []string{"poison"}, func(string) []byte { return []byte(`{"id":"poison","input":`) })
	res.until(docs+1, 2*time.Minute)
	for i := range requests {
		n.do(t, "POST", "/_inference/"+id, fmt.Sprintf(`{"input":"search %d"}`, i)).mustStatus(t, 200)
	}
	n.do(t, "POST", "/_inference/"+id, `{"input":[]}`).mustStatus(t, 400)
	n.do(t, "PUT", "/_inference/text_embedding/blocker?timeout=2m",
		`{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1}}`).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/text_embedding/starved",
		`{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_threads":1,`+
			`"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":1}}}`).mustStatus(t, 200)
	n.do(t, "POST", "/_inference/starved?timeout=30s", `{"input":"never served"}`).mustStatus(t, 429)

	// Acks are not awaited, and the controller looks at the queue every
	// interval: its last look may predate the last ack.
	m := scrape(t, n.MetricsAddr())
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if value(m, "jetinfer_queue_documents", "inference_id="+id, "state=unacknowledged") == 0 &&
			value(m, "jetinfer_queue_documents", "inference_id="+id, "state=pending") == 0 {
			break
		}
		m = scrape(t, n.MetricsAddr())
	}
	for _, c := range []struct {
		family string
		labels []string
		want   float64
	}{
		{"jetinfer_documents_total", []string{"inference_id=" + id, "delivery=first"}, docs + 1},
		{"jetinfer_documents_total", []string{"inference_id=" + id, "delivery=redelivery"}, 0},
		{"jetinfer_document_results_total", []string{"inference_id=" + id, "outcome=ok"}, docs},
		{"jetinfer_document_results_total", []string{"inference_id=" + id, "outcome=error"}, 1},
		{"jetinfer_documents_terminated_total", []string{"inference_id=" + id}, 1},
		{"jetinfer_inference_requests_total", []string{"inference_id=" + id, "task_type=text_embedding", "outcome=ok"}, requests},
		{"jetinfer_inference_queue_wait_seconds", []string{"inference_id=" + id}, requests},
		{"jetinfer_inference_request_duration_seconds", []string{"inference_id=" + id}, requests},
		{"jetinfer_inference_requests_waiting", []string{"inference_id=" + id}, 0},
		{"jetinfer_node_allocations", []string{"inference_id=" + id}, 1},
		{"jetinfer_http_requests_total", []string{"action=" + auth.ActionInferencePost, "status=200", "error_type="}, requests},
		{"jetinfer_http_requests_total", []string{"action=" + auth.ActionInferencePost, "status=400", "error_type=action_request_validation_exception"}, 1},
		{"jetinfer_http_requests_total", []string{"action=" + auth.ActionInferencePost, "status=429", "error_type=status_exception"}, 1},
		{"jetinfer_http_requests_total", []string{"action=" + auth.ActionInferencePut, "status=200"}, 3},
		{"jetinfer_http_request_duration_seconds", []string{"action=" + auth.ActionInferencePost}, requests + 2},
		{"jetinfer_queue_documents", []string{"inference_id=" + id, "state=pending"}, 0},
		{"jetinfer_queue_documents", []string{"inference_id=" + id, "state=unacknowledged"}, 0},
		{"jetinfer_model_tokenize_duration_seconds", []string{"model_id=.multilingual-e5-small", "threads=1"}, -2},
		{"jetinfer_model_run_duration_seconds", []string{"model_id=.multilingual-e5-small", "threads=1"}, -2},
		{"jetinfer_model_batch_rows", []string{"model_id=.multilingual-e5-small", "threads=1"}, -2},
		{"jetinfer_model_loads_total", []string{"model_id=.multilingual-e5-small", "outcome=ok"}, 1},
		{"jetinfer_model_load_duration_seconds", []string{"model_id=.multilingual-e5-small"}, 1},
		{"jetinfer_model_inputs_total", []string{"model_id=.multilingual-e5-small", "threads=1"}, docs + requests},
		{"jetinfer_nats_connected", nil, 1},
		{"jetinfer_controller_leader", nil, 1},
		{"jetinfer_allocations", []string{"inference_id=" + id, "state=target"}, 1},
		{"jetinfer_allocations", []string{"inference_id=" + id, "state=running"}, 1},
		{"jetinfer_allocations", []string{"inference_id=" + id, "state=pending"}, 0},
		{"jetinfer_scaler_needed_allocations", []string{"inference_id=" + id}, 1},
	} {
		got := value(m, c.family, c.labels...)
		if c.want == -2 { // a histogram that must have observations
			if got < 1 {
				t.Errorf("%s%v has %v observations; want some", c.family, c.labels, got)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s%v = %v; want %v", c.family, c.labels, got, c.want)
		}
	}
	tokens, padded := value(m, "jetinfer_model_tokens_total"), value(m, "jetinfer_model_padded_tokens_total")
	if tokens <= 0 || padded < tokens {
		t.Errorf("tokens %v, padded %v; want 0 < tokens <= padded", tokens, padded)
	}
	if run, tok := value(m, "jetinfer_model_run_seconds_total"), value(m, "jetinfer_model_tokenize_seconds_total"); run <= 0 || tok <= 0 {
		t.Errorf("run %v s, tokenize %v s; want both spent", run, tok)
	}
	if value(m, "go_goroutines") <= 0 || value(m, "process_resident_memory_bytes") <= 0 {
		t.Error("the Go and process collectors are missing")
	}

	// Every metric the Grafana dashboard queries is one this node exposes
	// (its download counter appears once a model is downloaded).
	dashboard, err := os.ReadFile(filepath.Join("..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`jetinfer_[a-z_]+`).FindAllString(string(dashboard), -1)
	if len(names) < 20 {
		t.Fatalf("the dashboard names %d metrics", len(names))
	}
	for _, name := range names {
		family := strings.TrimSuffix(name, "_bucket")
		if m[family] == nil && family != "jetinfer_model_download_bytes_total" {
			t.Errorf("the dashboard queries %s, which the node does not expose", name)
		}
	}
}
