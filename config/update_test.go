package config

import (
	"testing"

	"github.com/jetinfer/jetinfer/eserror"
)

func TestParseUpdate(t *testing.T) {
	mustPut := func(task TaskType, body string) Endpoint {
		t.Helper()
		ep, err := ParsePut("ep", task, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	sparse := mustPut(SparseEmbedding, `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":2}}`)
	adaptive := mustPut(SparseEmbedding, `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_threads":1,"adaptive_allocations":{"enabled":true,"min_number_of_allocations":3,"max_number_of_allocations":8}}}`)
	rerank := mustPut(Rerank, `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1}}`)

	accepts := []struct {
		name    string
		current Endpoint
		task    TaskType
		body    string
		want    string
	}{
		{"allocations", sparse, SparseEmbedding, `{"service_settings":{"num_allocations":4}}`,
			`{"inference_id":"ep","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":4,"num_threads":2,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`},
		{"switch to adaptive", sparse, Any, `{"service_settings":{"adaptive_allocations":{"enabled":true,"max_number_of_allocations":2}}}`,
			`{"inference_id":"ep","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_threads":2,"model_id":".elser_model_2","adaptive_allocations":{"enabled":true,"max_number_of_allocations":2}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`},
		{"disabling adaptive freezes at the initial count", adaptive, SparseEmbedding, `{"service_settings":{"adaptive_allocations":{"enabled":false}}}`,
			`{"inference_id":"ep","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":3,"num_threads":1,"model_id":".elser_model_2","adaptive_allocations":{"enabled":false}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`},
		{"chunking replaced whole", sparse, SparseEmbedding, `{"task_type":"sparse_embedding","chunking_settings":{"strategy":"word","max_chunk_size":40,"overlap":10}}`,
			`{"inference_id":"ep","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":2,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"word","max_chunk_size":40,"overlap":10}}`},
		{"rerank return_documents", rerank, Rerank, `{"task_settings":{"return_documents":false}}`,
			`{"inference_id":"ep","task_type":"rerank","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".rerank-v1"},"task_settings":{"return_documents":false}}`},
	}
	for _, tt := range accepts {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUpdate(tt.current, tt.task, []byte(tt.body))
			if err != nil {
				t.Fatalf("ParseUpdate: %v", err)
			}
			if s := mustJSON(t, got); s != tt.want {
				t.Errorf("ParseUpdate =\n%s\nwant\n%s", s, tt.want)
			}
		})
	}

	rejects := []struct {
		name    string
		current Endpoint
		task    TaskType
		body    string
		typ     string
		reason  string
	}{
		{"empty object", sparse, Any, `{}`, eserror.TypeStatus, "Request body is empty"},
		{"service cannot change", sparse, Any, `{"service":"elser","service_settings":{"num_allocations":2}}`, eserror.TypeStatus,
			"Request contained fields which cannot be updated, remove these fields and try again [{service=elser}]"},
		{"task type differs", sparse, TextEmbedding, `{"service_settings":{"num_allocations":2}}`, eserror.TypeStatus,
			"Task type must match the task type of the existing endpoint"},
		{"threads cannot change", sparse, Any, `{"service_settings":{"num_threads":4}}`, eserror.TypeValidation,
			"Validation Failed: 1: [num_threads] cannot be updated;"},
		{"both allocation settings", sparse, Any, `{"service_settings":{"num_allocations":2,"adaptive_allocations":{"enabled":true}}}`, eserror.TypeValidation,
			"Validation Failed: 1: [num_allocations] cannot be set if [adaptive_allocations] is set;"},
		{"neither allocation setting", sparse, Any, `{"service_settings":{}}`, eserror.TypeValidation,
			"Validation Failed: 1: [service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations];"},
		{"unknown service setting", sparse, Any, `{"service_settings":{"model_id":"x"}}`, eserror.TypeXContentParse,
			"[1:22] [service_settings] unknown field [model_id]"},
		{"zero allocations", sparse, Any, `{"service_settings":{"num_allocations":0}}`, eserror.TypeValidation,
			"Validation Failed: 1: [service_settings] Invalid value [0]. [num_allocations] must be a positive integer;"},
		{"service settings not an object", sparse, Any, `{"service_settings":[1]}`, eserror.TypeStatus,
			"Unable to parse [service_settings] in the request [[1]]"},
		{"chunking on rerank", rerank, Any, `{"chunking_settings":{"strategy":"none"}}`, eserror.TypeStatus,
			"Configuration contains settings [{chunking_settings={strategy=none}}] unknown to the [elasticsearch] service"},
		{"unknown task setting", rerank, Any, `{"task_settings":{"top_n":3}}`, eserror.TypeStatus,
			"Configuration contains settings [{top_n=3}] unknown to the [elasticsearch] service"},
	}
	for _, tt := range rejects {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseUpdate(tt.current, tt.task, []byte(tt.body))
			wantError(t, err, 400, tt.typ, tt.reason)
		})
	}
}
