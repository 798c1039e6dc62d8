package config

import (
	"errors"
	"testing"

	"github.com/jetinfer/jetinfer/eserror"
)

// FuzzParsePut checks that any PUT body either fails with a client error in
// Elasticsearch's shape or yields a definition that reads back from the
// bucket unchanged.
func FuzzParsePut(f *testing.F) {
	seeds := []string{
		`{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":1}}`,
		`{"task_type":"rerank","service":"elasticsearch","service_settings":{"model_id":"m","num_threads":2,"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0}},"task_settings":{"return_documents":false}}`,
		`{"service":"elasticsearch","service_settings":{"model_id":"m","num_allocations":1,"num_threads":1,"similarity":"l2_norm","element_type":"byte"},"chunking_settings":{"strategy":"recursive","max_chunk_size":30,"separators":["\n"]}}`,
		`{"service":"elser","service_settings":{"num_allocations":1,"num_threads":1},"chunking_settings":{"strategy":"word","max_chunk_size":10,"overlap":5}}`,
		`{"service":"elasticsearch","service_settings":{"num_threads":1e3,"num_allocations":-0}}`,
		`{"service":"elasticsearch","service_settings":{"num_threads":1},"chunking_settings":{"strategy":5}}`,
		`{"a":{"b":[1,2,{"c":null}]},"a":1}`,
		"{\"service\":\"\xff\"}",
		`[]`, `{`, ``,
	}
	for _, s := range seeds {
		for _, task := range []string{"any", "sparse_embedding", "text_embedding", "rerank"} {
			f.Add(task, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, task string, body []byte) {
		tt, err := ParseTaskType(task)
		if err != nil {
			return
		}
		ep, err := ParsePut("fuzz.id", tt, body)
		if err != nil {
			var e *eserror.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("ParsePut(%q) error = %v; want a 4xx exception", body, err)
			}
			return
		}
		stored := mustJSON(t, ep)
		back, err := ParseStored(Token(ep.InferenceID), []byte(stored))
		if err != nil {
			t.Fatalf("ParseStored(%s): %v", stored, err)
		}
		if again := mustJSON(t, back); again != stored {
			t.Fatalf("stored form changed on reading back:\n%s\n%s", stored, again)
		}
	})
}
