package test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/wire"
)

// TestHostileDocuments: a document of a quarter of a million empty inputs
// (750 KB) gets its error result at once, and one whose chunks could never
// fit in a result message gets 413 before anything is embedded, instead of
// building a result of hundreds of megabytes first; a document beside them
// is served.
func TestHostileDocuments(t *testing.T) {
	n := startNode(t, nil)
	body := `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1},` +
		`"chunking_settings":{"strategy":"word","max_chunk_size":10,"overlap":5}}`
	n.do(t, "PUT", "/_inference/text_embedding/hostile?timeout=2m", body).mustStatus(t, 200)
	js := connectJS(t, n.NATSURL())
	ctx := context.Background()
	publish := func(id string, inputs []string) {
		t.Helper()
		data, err := json.Marshal(map[string]any{"id": id, "input": inputs})
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(wire.IngestSubject("hostile"))
		msg.Data = data
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("publish %s (%d bytes): %v", id, len(data), err)
		}
	}
	publish("empty-inputs", make([]string, 250_000))
	// 2,048 inputs of 200 words: 39 chunks each, 79,872 chunks of 32
	// dimensions, at least 114 bytes each in a result: more than the 8 MB
	// a message may have here (the embedded server's max_payload).
	words := strings.TrimSpace(strings.Repeat("word ", 200))
	many := make([]string, wire.MaxDocumentInputs)
	for i := range many {
		many[i] = words
	}
	publish("many-chunks", many)
	publish("fine", []string{"a fine document"})

	got := readResults(t, js, "hostile", 3, 300*time.Millisecond)
	byID := map[string]string{}
	for _, r := range got {
		byID[r.docID] = r.body
	}
	want := map[string]string{
		"empty-inputs": `{"error":{"root_cause":[{"type":"action_request_validation_exception","reason":"Validation Failed: 1: a document has at most [2048] inputs, got [250000];"}],"type":"action_request_validation_exception","reason":"Validation Failed: 1: a document has at most [2048] inputs, got [250000];"},"status":400}`,
		"many-chunks":  `{"error":{"root_cause":[{"type":"content_too_long_exception","reason":"the result of [2048] inputs and [79872] chunks would take at least [9105408] bytes, more than the largest message the NATS server accepts [8388608 bytes]"}],"type":"content_too_long_exception","reason":"the result of [2048] inputs and [79872] chunks would take at least [9105408] bytes, more than the largest message the NATS server accepts [8388608 bytes]"},"status":413}`,
	}
	if len(got) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(got), got)
	}
	for id, w := range want {
		if byID[id] != w {
			t.Errorf("%s: %.300s\nwant %s", id, byID[id], w)
		}
	}
	if !strings.Contains(byID["fine"], `"embeddings":[`) {
		t.Errorf("fine: %.200s", byID["fine"])
	}
	requireQueueEmpty(t, js, "hostile")
	// Each refused at its first attempt: one error each, no retries.
	requireWork(t, js, "hostile", 3, 3)
}
