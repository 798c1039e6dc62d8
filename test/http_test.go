package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/node"
)

const (
	elserBody = `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":1}}`
	elserJSON = `{"inference_id":"my-elser","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`

	defaultELSER  = `{"inference_id":".elser-2-elasticsearch","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_threads":1,"model_id":".elser_model_2_linux-x86_64","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":32}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`
	defaultE5     = `{"inference_id":".multilingual-e5-small-elasticsearch","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_threads":1,"model_id":".multilingual-e5-small_linux-x86_64","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":32}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`
	defaultRerank = `{"inference_id":".rerank-v1-elasticsearch","task_type":"rerank","service":"elasticsearch","service_settings":{"num_threads":1,"model_id":".rerank-v1","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":32}},"task_settings":{"return_documents":true}}`
)

func TestEndpointLifecycle(t *testing.T) {
	n := startNode(t, nil)

	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser", elserBody).expect(t, 200, elserJSON)
	n.do(t, "GET", "/_inference/my-elser", "").expect(t, 200, `{"endpoints":[`+elserJSON+`]}`)
	n.do(t, "GET", "/_inference/sparse_embedding/my-elser", "").expect(t, 200, `{"endpoints":[`+elserJSON+`]}`)
	n.do(t, "GET", "/_inference/text_embedding/my-elser", "").expect(t, 400,
		esError(400, "status_exception", "Requested task type [text_embedding] does not match the inference endpoint's task type [sparse_embedding]"))

	all := `{"endpoints":[` + defaultELSER + `,` + defaultE5 + `,` + defaultRerank + `,` + elserJSON + `]}`
	n.do(t, "GET", "/_inference", "").expect(t, 200, all)
	n.do(t, "GET", "/_inference/_all", "").expect(t, 200, all)
	n.do(t, "GET", "/_inference/*", "").expect(t, 200, all)
	n.do(t, "GET", "/_inference/sparse_embedding/_all", "").expect(t, 200, `{"endpoints":[`+defaultELSER+`,`+elserJSON+`]}`)
	n.do(t, "GET", "/_inference/completion/_all", "").expect(t, 200, `{"endpoints":[]}`)

	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser", elserBody).expect(t, 400,
		esError(400, "resource_already_exists_exception", "Inference endpoint [my-elser] already exists"))

	updated := strings.Replace(elserJSON, `"num_allocations":1`, `"num_allocations":3`, 1)
	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser/_update?master_timeout=30s", `{"service_settings":{"num_allocations":3}}`).expect(t, 200, updated)
	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser/_update?master_timeout=x", `{"service_settings":{"num_allocations":3}}`).expect(t, 400,
		esError(400, "illegal_argument_exception", "failed to parse setting [master_timeout] with value [x] as a time value: unit is missing or unrecognized"))
	n.do(t, "GET", "/_inference/my-elser", "").expect(t, 200, `{"endpoints":[`+updated+`]}`)

	n.do(t, "DELETE", "/_inference/text_embedding/my-elser", "").expect(t, 400,
		esError(400, "status_exception", "Requested task type [text_embedding] does not match the inference endpoint's task type [sparse_embedding]"))
	n.do(t, "DELETE", "/_inference/my-elser?dry_run=true", "").expect(t, 200, `{"acknowledged":false,"pipelines":[],"indexes":[]}`)
	n.do(t, "DELETE", "/_inference/sparse_embedding/my-elser", "").expect(t, 200, `{"acknowledged":true,"pipelines":[],"indexes":[]}`)
	n.do(t, "GET", "/_inference/my-elser", "").expect(t, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [my-elser]"))
	n.do(t, "DELETE", "/_inference/my-elser", "").expect(t, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [my-elser]"))
	n.do(t, "PUT", "/_inference/my-elser/_update", `{"service_settings":{"num_allocations":3}}`).expect(t, 404,
		esError(404, "resource_not_found_exception", "The inference endpoint [my-elser] does not exist and cannot be updated"))

	// The id is free again.
	n.do(t, "PUT", "/_inference/my-elser", `{"task_type":"sparse_embedding",`+elserBody[1:]).expect(t, 200, elserJSON)
}

func TestDefinitionsAreStoredAsGETReturnsThem(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/sparse_embedding/a.b", elserBody).mustStatus(t, 200)

	js := connectJS(t, n.NATSURL())
	kv, err := js.KeyValue(context.Background(), config.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), "a=b")
	if err != nil {
		t.Fatalf("get key a=b: %v", err)
	}
	want := strings.Replace(elserJSON, `"my-elser"`, `"a.b"`, 1)
	if string(entry.Value()) != want {
		t.Errorf("stored value = %s; want %s", entry.Value(), want)
	}
	// The reserved endpoints are stored too, under '=' keys.
	for _, key := range []string{"=elser-2-elasticsearch", "=multilingual-e5-small-elasticsearch", "=rerank-v1-elasticsearch"} {
		if _, err := kv.Get(context.Background(), key); err != nil {
			t.Errorf("get key %s: %v", key, err)
		}
	}
}

func (r response) mustStatus(t *testing.T, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d (%s); want %d", r.status, r.body, want)
	}
}

func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestConcurrentPutsExactlyOneWins(t *testing.T) {
	n := startNode(t, nil)
	const writers = 16
	var wg sync.WaitGroup
	results := make([]response, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":%d,"num_threads":1}}`, i+1)
			req, _ := http.NewRequest("PUT", n.base+"/_inference/sparse_embedding/race", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			results[i] = send(t, req)
		}()
	}
	wg.Wait()
	winner := -1
	for i, r := range results {
		switch r.status {
		case 200:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both created the endpoint", winner, i)
			}
			winner = i
		case 400:
			if r.body != esError(400, "resource_already_exists_exception", "Inference endpoint [race] already exists") {
				t.Errorf("loser %d got %s", i, r.body)
			}
		default:
			t.Errorf("writer %d got %d %s", i, r.status, r.body)
		}
	}
	if winner < 0 {
		t.Fatal("no writer created the endpoint")
	}
	got := n.do(t, "GET", "/_inference/race", "")
	if !strings.Contains(got.body, fmt.Sprintf(`"num_allocations":%d,`, winner+1)) {
		t.Errorf("stored definition %s is not the winner's (num_allocations %d)", got.body, winner+1)
	}
}

func TestReservedEndpoints(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "GET", "/_inference/.elser-2-elasticsearch", "").expect(t, 200, `{"endpoints":[`+defaultELSER+`]}`)
	n.do(t, "GET", "/_inference/rerank/.rerank-v1-elasticsearch", "").expect(t, 200, `{"endpoints":[`+defaultRerank+`]}`)
	n.do(t, "PUT", "/_inference/sparse_embedding/.elser-2-elasticsearch", elserBody).expect(t, 400, esError(400, "action_request_validation_exception",
		"Validation Failed: 1: Invalid inference_id; '.elser-2-elasticsearch' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"))
	n.do(t, "PUT", "/_inference/.elser-2-elasticsearch/_update", `{"service_settings":{"num_allocations":1}}`).expect(t, 400,
		esError(400, "status_exception", "Default endpoint [.elser-2-elasticsearch] cannot be updated"))
	n.do(t, "DELETE", "/_inference/.elser-2-elasticsearch", "").expect(t, 400, esError(400, "status_exception",
		"[.elser-2-elasticsearch] is a reserved inference endpoint. Use the force=true query parameter to delete the inference endpoint."))
	n.do(t, "DELETE", "/_inference/.elser-2-elasticsearch?force=maybe", "").expect(t, 400, esError(400, "illegal_argument_exception",
		"Failed to parse value [maybe] as only [true] or [false] are allowed."))
	n.do(t, "DELETE", "/_inference/.elser-2-elasticsearch?force=true&dry_run", "").expect(t, 200, `{"acknowledged":false,"pipelines":[],"indexes":[]}`)
	n.do(t, "DELETE", "/_inference/.elser-2-elasticsearch?force=true", "").expect(t, 200, `{"acknowledged":true,"pipelines":[],"indexes":[]}`)
	// As in Elasticsearch, a reserved endpoint is always listed.
	n.do(t, "GET", "/_inference/.elser-2-elasticsearch", "").expect(t, 200, `{"endpoints":[`+defaultELSER+`]}`)
}

func TestInferRequests(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser", elserBody).mustStatus(t, 200)
	m := directModel(t, ".elser_model_2")
	ep := config.Endpoint{InferenceID: "my-elser", TaskType: config.SparseEmbedding}
	n.do(t, "POST", "/_inference/my-elser", `{"input":"hello"}`).expect(t, 200, directInfer(t, m, ep, `{"input":"hello"}`))
	n.do(t, "POST", "/_inference/sparse_embedding/my-elser?timeout=60s", `{"input":["a","b"]}`).expect(t, 200, directInfer(t, m, ep, `{"input":["a","b"]}`))

	cases := []struct {
		path, body string
		status     int
		want       string
	}{
		{"/_inference/my-elser", `{"input":[]}`, 400, esError(400, "action_request_validation_exception", "Validation Failed: 1: Field [input] cannot be an empty array;")},
		{"/_inference/my-elser", `{"query":"q"}`, 400, esError(400, "action_request_validation_exception", "Validation Failed: 1: Field [input] cannot be null;")},
		{"/_inference/sparse_embedding/my-elser", `{"input":"x","input_type":"search"}`, 400,
			esError(400, "action_request_validation_exception", "Validation Failed: 1: Field [input_type] cannot be specified for task type [sparse_embedding];")},
		{"/_inference/sparse_embedding/my-elser", `{"input":"x","top_n":2}`, 400,
			esError(400, "action_request_validation_exception", "Validation Failed: 1: Field [top_n] cannot be specified for task type [sparse_embedding];")},
		{"/_inference/rerank/my-elser", `{"input":"x","query":"q"}`, 400,
			esError(400, "status_exception", "Incompatible task_type, the requested type [rerank] does not match the model type [sparse_embedding]")},
		{"/_inference/rerank/.rerank-v1-elasticsearch", `{"input":"x"}`, 400,
			esError(400, "action_request_validation_exception", "Validation Failed: 1: Field [query] cannot be null for task type [rerank];")},
		{"/_inference/.rerank-v1-elasticsearch", `{"input":"x"}`, 400,
			esError(400, "action_request_validation_exception", "Validation Failed: 1: Field [query] cannot be null for task type [rerank];")},
		{"/_inference/my-elser", `{"input":"x","inputs":["y"]}`, 400,
			esError(400, "x_content_parse_exception", "[1:14] [cluster:internal/xpack/inference] unknown field [inputs]")},
		{"/_inference/missing", `{"input":"x","bad":1}`, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [missing]")},
		{"/_inference/sparse_embedding/missing", `{"input":"x","bad":1}`, 400,
			esError(400, "x_content_parse_exception", "[1:14] [cluster:internal/xpack/inference] unknown field [bad]")},
		{"/_inference/my-elser?timeout=10", `{"input":"x"}`, 400,
			esError(400, "illegal_argument_exception", "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized")},
		{"/_inference/my-elser/_stream", `{"input":"x"}`, 405, esError(405, "status_exception", "Streaming is not allowed for service [elasticsearch].")},
		{"/_inference/sparse_embedding/my-elser/_stream", `{"input":"x"}`, 405, esError(405, "status_exception", "Streaming is not allowed for service [elasticsearch].")},
		{"/_inference/nope/_stream", `{"input":"x"}`, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [nope]")},
	}
	for _, c := range cases {
		t.Run(c.path+" "+c.body, func(t *testing.T) {
			n.do(t, "POST", c.path, c.body).expect(t, c.status, c.want)
		})
	}
}

func TestBadHTTPInput(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.MaxBodyBytes = 4096 })
	put := func(path, contentType, body string) response {
		req, _ := http.NewRequest("PUT", n.base+path, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		return send(t, req)
	}
	huge := `{"service":"elasticsearch","service_settings":{"model_id":"` + strings.Repeat("m", 5000) + `"}}`
	put("/_inference/sparse_embedding/x", "application/json", huge).expect(t, 413,
		esError(413, "content_too_long_exception", "request body is too large; the limit is [4096] bytes"))
	put("/_inference/sparse_embedding/x", "application/x-www-form-urlencoded", elserBody).expect(t, 406,
		`{"error":"Content-Type header [application/x-www-form-urlencoded] is not supported","status":406}`)
	put("/_inference/sparse_embedding/x", "", elserBody).expect(t, 406, `{"error":"Content-Type header is missing","status":406}`)
	put("/_inference/sparse_embedding/x", "application/vnd.elasticsearch+json; compatible-with=9", elserBody).mustStatus(t, 200)
	put("/_inference/sparse_embedding/y", "application/json", "").expect(t, 400, esError(400, "parse_exception", "request body is required"))
	put("/_inference/sparse_embedding/y", "application/json", `{"service":"elasticsearch",`).expect(t, 400,
		`{"error":{"root_cause":[{"type":"x_content_parse_exception","reason":"[1:28] Unexpected end-of-input"}],"type":"x_content_parse_exception","reason":"[1:28] Unexpected end-of-input","caused_by":{"type":"json_parse_exception","reason":"Unexpected end-of-input"}},"status":400}`)
	put("/_inference/bogus/y", "application/json", elserBody).expect(t, 400, esError(400, "status_exception", "Unknown task_type [bogus]"))
	put("/_inference/sparse_embedding/y?timeout=1.5s", "application/json", elserBody).expect(t, 400,
		esError(400, "illegal_argument_exception", "failed to parse [1.5s], fractional time values are not supported"))
	put("/_inference/sparse_embedding/y?forse=true", "application/json", elserBody).expect(t, 400,
		esError(400, "illegal_argument_exception", "request [/_inference/sparse_embedding/y] contains unrecognized parameter: [forse]"))

	// Ids that try to escape the path are just invalid ids, or paths that
	// match nothing.
	invalidID := func(id string) string {
		return esError(400, "action_request_validation_exception", "Validation Failed: 1: Invalid inference_id; '"+id+"' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;")
	}
	put("/_inference/sparse_embedding/..%2F..%2Fetc", "application/json", elserBody).expect(t, 400, invalidID("../../etc"))
	put("/_inference/sparse_embedding/a%00b", "application/json", elserBody).expect(t, 400, invalidID("a\x00b"))
	put("/_inference/sparse_embedding/caf%C3%A9", "application/json", elserBody).expect(t, 400, invalidID("café"))
	n.do(t, "GET", "/_inference/..%2F_all", "").expect(t, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [../_all]"))
	n.do(t, "GET", "/_inference/a>b", "").expect(t, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found [a>b]"))
	raw := rawGET(t, n.HTTPAddr(), "/_inference/%zz")
	if !strings.HasPrefix(raw, "HTTP/1.1 400") {
		t.Errorf("GET /_inference/%%zz = %q; want a 400", raw)
	}

	// Routing errors in RestController's flat format.
	r := n.do(t, "PATCH", "/_inference/x", "")
	r.expect(t, 405, `{"error":"Incorrect HTTP method for uri [/_inference/x] and method [PATCH], allowed: [GET, POST, PUT, DELETE]","status":405}`)
	if got := r.header.Get("Allow"); got != "GET,POST,PUT,DELETE" {
		t.Errorf("Allow = %q", got)
	}
	n.do(t, "GET", "/_inference/x/y/z", "").expect(t, 400, `{"error":"no handler found for uri [/_inference/x/y/z] and method [GET]"}`)
	n.do(t, "GET", "/_cat/indices", "").expect(t, 400, `{"error":"no handler found for uri [/_cat/indices] and method [GET]"}`)
	n.do(t, "DELETE", "/_inference/x/_update", "").expect(t, 405,
		`{"error":"Incorrect HTTP method for uri [/_inference/x/_update] and method [DELETE], allowed: [PUT]","status":405}`)
}

// rawGET sends a request line that Go's client refuses to build.
func rawGET(t *testing.T, addr, path string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	b, _ := io.ReadAll(conn)
	return string(b)
}

func TestRoot(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.ClusterName = "search-infra" })
	n.do(t, "GET", "/", "").expect(t, 200, `{"name":"test-node","cluster_name":"search-infra","cluster_uuid":"_na_","version":{"number":"9.1.0","build_flavor":"default","build_type":"jetinfer","build_hash":"unknown","build_date":"unknown","build_snapshot":false,"lucene_version":"none","minimum_wire_compatibility_version":"8.18.0","minimum_index_compatibility_version":"8.0.0"},"tagline":"You Know, for Search"}`)
	head := n.do(t, "HEAD", "/", "")
	if head.status != 200 || head.body != "" {
		t.Errorf("HEAD / = %d %q; want 200 and no body", head.status, head.body)
	}
	pretty := n.do(t, "GET", "/_inference/.rerank-v1-elasticsearch?pretty", "")
	if !strings.HasPrefix(pretty.body, "{\n  \"endpoints\": [\n    {\n      \"inference_id\": \".rerank-v1-elasticsearch\",") {
		t.Errorf("?pretty body = %s", pretty.body)
	}
}

// TestInvalidDefinitionInBucket writes definitions straight into the bucket,
// as another tool might: they are validated like a PUT, reported, and never
// break the API.
func TestInvalidDefinitionInBucket(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/sparse_embedding/good", elserBody).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	kv, err := js.KeyValue(context.Background(), config.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	bad := `{"inference_id":"bad","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":3,"model_id":".elser_model_2"}}`
	if _, err := kv.Put(context.Background(), "bad", []byte(bad)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "garbage", []byte("\x00not json")); err != nil {
		t.Fatal(err)
	}

	n.do(t, "GET", "/_inference/bad", "").expect(t, 500,
		`{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"}],"type":"status_exception","reason":"Failed to load inference endpoint [bad]. Endpoint is in an invalid state","caused_by":{"type":"action_request_validation_exception","reason":"Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"}},"status":500}`)
	garbage := n.do(t, "GET", "/_inference/garbage", "")
	if garbage.status != 500 || !strings.Contains(garbage.body, `"reason":"Failed to load inference endpoint [garbage]. Endpoint is in an invalid state"`) {
		t.Errorf("GET garbage = %d %s", garbage.status, garbage.body)
	}
	n.do(t, "POST", "/_inference/bad", `{"input":"x"}`).mustStatus(t, 500)
	// Listing shows the valid endpoints only.
	good := strings.Replace(elserJSON, `"my-elser"`, `"good"`, 1)
	n.do(t, "GET", "/_inference/sparse_embedding/_all", "").expect(t, 200, `{"endpoints":[`+defaultELSER+`,`+good+`]}`)
	// Deleting repairs it.
	n.do(t, "DELETE", "/_inference/bad", "").expect(t, 200, `{"acknowledged":true,"pipelines":[],"indexes":[]}`)
	n.do(t, "GET", "/_inference/bad", "").mustStatus(t, 404)
}

// TestStoreUnavailable runs a node against an external nats-server and
// stops that server: requests get a 503 in Elasticsearch's envelope, not a
// hang or a crash, and the node recovers when NATS returns.
func TestStoreUnavailable(t *testing.T) {
	dir := t.TempDir()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: dir, Listen: "127.0.0.1:0", ServerName: "external"}, log)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	n := startNode(t, func(c *node.Config) { c.NATSURL = url })
	n.do(t, "PUT", "/_inference/sparse_embedding/before", elserBody).mustStatus(t, 200)

	srv.Shutdown()
	r := n.do(t, "PUT", "/_inference/sparse_embedding/during", elserBody)
	if r.status != 503 || !strings.HasPrefix(r.body, `{"error":{"root_cause":[{"type":"status_exception","reason":"The inference endpoint store is unavailable"}],"type":"status_exception","reason":"The inference endpoint store is unavailable","caused_by":{"type":"illegal_state_exception","reason":"inference endpoint store unavailable: create during: `) {
		t.Fatalf("PUT while NATS is down = %d %s", r.status, r.body)
	}
	n.do(t, "GET", "/_inference/before", "").mustStatus(t, 503)

	// The same server comes back on the same address and data directory.
	srv2, err := embeddednats.Start(embeddednats.Config{StoreDir: dir, Listen: strings.TrimPrefix(url, "nats://"), ServerName: "external"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)
	deadline := time.Now().Add(time.Minute)
	for {
		r := n.do(t, "GET", "/_inference/before", "")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after NATS returned = %d %s", r.status, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	n.do(t, "GET", "/_inference/during", "").mustStatus(t, 404)
}

// TestBucketDeletedByHand: an operator deleting the bucket makes the API
// answer 503 in Elasticsearch's envelope; nothing crashes.
func TestBucketDeletedByHand(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser", elserBody).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	if err := js.DeleteKeyValue(context.Background(), config.Bucket); err != nil {
		t.Fatal(err)
	}
	r := n.do(t, "GET", "/_inference/my-elser", "")
	if r.status != 503 || !strings.Contains(r.body, `"reason":"The inference endpoint store is unavailable"`) {
		t.Fatalf("GET after the bucket was deleted = %d %s", r.status, r.body)
	}
	n.do(t, "PUT", "/_inference/sparse_embedding/other", elserBody).mustStatus(t, 503)
	n.do(t, "GET", "/", "").mustStatus(t, 200)
	select {
	case err := <-n.Err():
		t.Fatalf("node failed: %v", err)
	default:
	}
}

// TestLongIDs: an id too long for a NATS subject is refused at PUT and is
// simply not found elsewhere; the node's NATS connection survives it.
func TestLongIDs(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/sparse_embedding/my-elser", elserBody).mustStatus(t, 200)
	long := strings.Repeat("a", 5000)
	r := n.do(t, "PUT", "/_inference/sparse_embedding/"+strings.Repeat("a", 256), elserBody)
	if r.status != 400 || !strings.Contains(r.body, "must not be longer than 255 bytes;") {
		t.Fatalf("PUT of a 256-byte id = %d %s", r.status, r.body)
	}
	n.do(t, "PUT", "/_inference/sparse_embedding/"+strings.Repeat("a", 255), elserBody).mustStatus(t, 200)
	n.do(t, "GET", "/_inference/"+long, "").expect(t, 404, esError(404, "resource_not_found_exception", "Inference endpoint not found ["+long+"]"))
	n.do(t, "DELETE", "/_inference/"+long, "").mustStatus(t, 404)
	n.do(t, "GET", "/_inference/my-elser", "").mustStatus(t, 200)
}

// TestTruncatedBody: a client that sends fewer bytes than its
// Content-Length and half-closes gets a 400 in Elasticsearch's envelope,
// never an empty 200.
func TestTruncatedBody(t *testing.T) {
	n := startNode(t, nil)
	addr := strings.TrimPrefix(n.base, "http://")
	for _, req := range []struct{ method, path string }{
		{"PUT", "/_inference/sparse_embedding/truncated"},
		{"POST", "/_inference/.elser-2-elasticsearch"},
	} {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"input\":", req.method, req.path, addr)
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		answer, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Fatalf("%s %s: reading the answer: %v", req.method, req.path, err)
		}
		head, body, _ := strings.Cut(string(answer), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 400 ") ||
			!strings.Contains(body, `{"error":{"root_cause":[{"type":"parse_exception","reason":"failed to read request body: unexpected EOF"}]`) {
			t.Errorf("%s %s with a truncated body answered:\n%s", req.method, req.path, answer)
		}
	}
}
