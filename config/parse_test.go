package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/xcontent"
)

// wantError checks that err is the Elasticsearch exception (status, type,
// reason).
func wantError(t *testing.T, err error, status int, typ, reason string) {
	t.Helper()
	var e *eserror.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T); want %s %q", err, err, typ, reason)
	}
	if e.Status != status || e.Type != typ || e.Reason != reason {
		t.Fatalf("error = %d %s %q; want %d %s %q", e.Status, e.Type, e.Reason, status, typ, reason)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := xcontent.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParsePutAccepts(t *testing.T) {
	tests := []struct {
		name string
		id   string
		task TaskType
		body string
		want string // GET JSON
	}{
		{
			name: "elser with defaults for chunking",
			id:   "my-elser", task: SparseEmbedding,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":1}}`,
			want: `{"inference_id":"my-elser","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		},
		{
			name: "task type from the body, adaptive allocations",
			id:   "e5", task: Any,
			body: `{"task_type":"text_embedding","service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_threads":2,"adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":4}}}`,
			want: `{"inference_id":"e5","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_threads":2,"model_id":".multilingual-e5-small","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":4}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		},
		{
			name: "body task type in other case matches the URL",
			id:   "e5", task: TextEmbedding,
			body: `{"task_type":"TEXT_EMBEDDING","service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small_linux-x86_64","num_allocations":2,"num_threads":1}}`,
			want: `{"inference_id":"e5","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_allocations":2,"num_threads":1,"model_id":".multilingual-e5-small_linux-x86_64"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		},
		{
			name: "rerank always prints its task settings and has no chunking",
			id:   "rr", task: Rerank,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1},"task_settings":{"return_documents":false}}`,
			want: `{"inference_id":"rr","task_type":"rerank","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".rerank-v1"},"task_settings":{"return_documents":false}}`,
		},
		{
			name: "Elastic Rerank chunks long documents (strategy in any case, trimmed)",
			id:   "rr", task: Rerank,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1,"long_document_strategy":" Chunk","max_chunks_per_doc":3}}`,
			want: `{"inference_id":"rr","task_type":"rerank","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".rerank-v1","long_document_strategy":"chunk","max_chunks_per_doc":3},"task_settings":{"return_documents":true}}`,
		},
		{
			name: "rerank default return_documents",
			id:   "rr", task: Rerank,
			body: `{"service":"elasticsearch","service_settings":{"model_id":"my-cross-encoder","num_allocations":1,"num_threads":1}}`,
			want: `{"inference_id":"rr","task_type":"rerank","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":"my-cross-encoder"},"task_settings":{"return_documents":true}}`,
		},
		{
			name: "imported text embedding model reports similarity and element type",
			id:   "mini", task: TextEmbedding,
			body: `{"service":"elasticsearch","service_settings":{"model_id":"sentence-transformers__all-minilm-l6-v2","num_allocations":1,"num_threads":4,"similarity":"DOT_PRODUCT"}}`,
			want: `{"inference_id":"mini","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":4,"model_id":"sentence-transformers__all-minilm-l6-v2","similarity":"dot_product","element_type":"float"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		},
		{
			name: "deprecated elser service defaults the model",
			id:   "old", task: SparseEmbedding,
			body: `{"service":"elser","service_settings":{"num_allocations":1,"num_threads":1}}`,
			want: `{"inference_id":"old","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2_linux-x86_64"},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		},
		{
			name: "word chunking",
			id:   "w", task: SparseEmbedding,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":1},"chunking_settings":{"strategy":"word","max_chunk_size":100,"overlap":50}}`,
			want: `{"inference_id":"w","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"word","max_chunk_size":100,"overlap":50}}`,
		},
		{
			name: "recursive chunking with a separator group",
			id:   "r", task: SparseEmbedding,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":1},"chunking_settings":{"strategy":"recursive","max_chunk_size":10,"separator_group":"plaintext"}}`,
			want: `{"inference_id":"r","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"recursive","max_chunk_size":10,"separators":["(?<!\\n)\\n\\n(?!\\n)","(?<!\\n)\\n(?!\\n)"]}}`,
		},
		{
			name: "none chunking ignores other keys as Elasticsearch's builder does",
			id:   "n", task: TextEmbedding,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1},"chunking_settings":{"strategy":"none"}}`,
			want: `{"inference_id":"n","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".multilingual-e5-small"},"chunking_settings":{"strategy":"none"}}`,
		},
		{
			name: "sentence overlap 0, empty chunking object means default",
			id:   "s", task: SparseEmbedding,
			body: `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":32},"chunking_settings":{"strategy":"sentence","max_chunk_size":20,"sentence_overlap":0}}`,
			want: `{"inference_id":"s","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":32,"model_id":".elser_model_2"},"chunking_settings":{"strategy":"sentence","max_chunk_size":20,"sentence_overlap":0}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := ParsePut(tt.id, tt.task, []byte(tt.body))
			if err != nil {
				t.Fatalf("ParsePut: %v", err)
			}
			if got := mustJSON(t, ep); got != tt.want {
				t.Errorf("ParsePut JSON =\n%s\nwant\n%s", got, tt.want)
			}
			// The stored form is the GET form, and it reads back identically.
			back, err := ParseStored(Token(tt.id), []byte(tt.want))
			if err != nil {
				t.Fatalf("ParseStored(own output): %v", err)
			}
			if got := mustJSON(t, back); got != tt.want {
				t.Errorf("ParseStored round trip =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParsePutRejects(t *testing.T) {
	const (
		elser  = `"model_id":".elser_model_2"`
		status = eserror.TypeStatus
		valid  = eserror.TypeValidation
		arv    = eserror.TypeActionRequestValidation
		iae    = eserror.TypeIllegalArgument
	)
	ss := func(s string) string { return `{"service":"elasticsearch","service_settings":{` + s + `}}` }
	tests := []struct {
		name   string
		id     string
		task   TaskType
		body   string
		status int
		typ    string
		reason string
	}{
		{"empty body", "x", SparseEmbedding, " ", 400, eserror.TypeParse, "request body is required"},
		{"upper-case id", "My-Id", SparseEmbedding, ss(elser), 400, arv,
			"Validation Failed: 1: Invalid inference_id; 'My-Id' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"},
		{"reserved id starts with a dot", ".elser-2-elasticsearch", SparseEmbedding, ss(elser), 400, arv,
			"Validation Failed: 1: Invalid inference_id; '.elser-2-elasticsearch' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"},
		{"id ends with a dash", "abc-", SparseEmbedding, ss(elser), 400, arv,
			"Validation Failed: 1: Invalid inference_id; 'abc-' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"},
		{"id with a path", "a/../b", SparseEmbedding, ss(elser), 400, arv,
			"Validation Failed: 1: Invalid inference_id; 'a/../b' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"},
		{"malformed JSON", "x", SparseEmbedding, `{"service":}`, 400, eserror.TypeXContentParse,
			"[1:12] invalid character '}' looking for beginning of value"},
		{"truncated JSON", "x", SparseEmbedding, "{\n\"service\":\"elasticsearch\"", 400, eserror.TypeXContentParse,
			"[2:26] Unexpected end-of-input"},
		{"duplicate field", "x", SparseEmbedding, `{"service":"a","service":"b"}`, 400, eserror.TypeXContentParse,
			"[1:16] Duplicate field 'service'"},
		{"array body", "x", SparseEmbedding, `[]`, 400, eserror.TypeXContentParse,
			"[1:1] Expected START_OBJECT but was: START_ARRAY"},
		{"no task type anywhere", "x", Any, ss(elser), 400, status, "model is missing required setting [task_type]"},
		{"task type any in body", "x", Any, `{"task_type":"any","service":"elasticsearch"}`, 400, status, "task_type [any] is not valid type for inference"},
		{"unknown task type in body", "x", Any, `{"task_type":"bogus","service":"elasticsearch"}`, 400, status, "Unknown task_type [bogus]"},
		{"conflicting task types", "x", SparseEmbedding, `{"task_type":"text_embedding","service":"elasticsearch"}`, 400, status,
			"Cannot resolve conflicting task_type parameter in the request URL [sparse_embedding] and the request body [text_embedding]"},
		{"missing service", "x", SparseEmbedding, `{"service_settings":{}}`, 400, status, "Inference endpoint configuration is missing the [service] setting"},
		{"unknown service", "x", SparseEmbedding, `{"service":"openai","service_settings":{}}`, 400, status, "Unknown service [openai]"},
		{"unsupported task type", "x", "completion", `{"service":"elasticsearch","service_settings":{}}`, 400, status,
			"The [elasticsearch] service does not support task type [completion]"},
		{"missing service settings", "x", SparseEmbedding, `{"service":"elasticsearch"}`, 400, status, "Missing required field [service_settings]"},
		{"service settings not an object", "x", SparseEmbedding, `{"service":"elasticsearch","service_settings":"x"}`, 400, status,
			"field [service_settings] is not of the expected type. The value [x] cannot be converted to a [Map]"},
		{"unknown top-level key", "x", SparseEmbedding, `{"service":"elasticsearch","service_settings":{"num_threads":3},"foo":"bar","n":1.50}`, 400, status,
			"Configuration contains settings [{foo=bar, n=1.5}] unknown to the [elasticsearch] service"},
		{"chunking settings on rerank are unknown", "x", Rerank,
			`{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1},"chunking_settings":{"strategy":"word","max_chunk_size":10,"overlap":5}}`, 400, status,
			"Configuration contains settings [{chunking_settings={strategy=word, max_chunk_size=10, overlap=5}}] unknown to the [elasticsearch] service"},
		{"unknown service setting", "x", SparseEmbedding, ss(elser + `,"num_allocations":1,"num_threads":1,"not_a_valid_service_setting":true`), 400, status,
			"Configuration contains settings [{not_a_valid_service_setting=true}] unknown to the [elasticsearch] service"},
		{"unknown task setting on sparse", "x", SparseEmbedding,
			`{"service":"elasticsearch","service_settings":{` + elser + `,"num_allocations":1,"num_threads":1},"task_settings":{"x":1}}`, 400, status,
			"Configuration contains settings [{x=1}] unknown to the [elasticsearch] service"},
		{"missing num_threads", "x", SparseEmbedding, ss(elser + `,"num_allocations":1`), 400, valid,
			"Validation Failed: 1: [service_settings] does not contain the required setting [num_threads];"},
		{"no allocations setting", "x", SparseEmbedding, ss(elser + `,"num_threads":1`), 400, valid,
			"Validation Failed: 1: [service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations];"},
		{"all service setting errors at once", "x", SparseEmbedding, ss(`"model_id":"","num_allocations":0,"num_threads":"two"`), 400, valid,
			"Validation Failed: 1: [service_settings] Invalid value [0]. [num_allocations] must be a positive integer;2: field [num_threads] is not of the expected type. The value [two] cannot be converted to a [Integer];3: [service_settings] Invalid value empty string. [model_id] must be a non-empty string;4: [service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations];"},
		{"float thread count", "x", SparseEmbedding, ss(elser + `,"num_allocations":1,"num_threads":1.0`), 400, valid,
			"Validation Failed: 1: field [num_threads] is not of the expected type. The value [1.0] cannot be converted to a [Integer];"},
		{"thread count beyond int", "x", SparseEmbedding, ss(elser + `,"num_allocations":1,"num_threads":3000000000`), 400, valid,
			"Validation Failed: 1: field [num_threads] is not of the expected type. The value [3000000000] cannot be converted to a [Integer];"},
		{"negative threads", "x", SparseEmbedding, ss(elser + `,"num_allocations":1,"num_threads":-2`), 400, valid,
			"Validation Failed: 1: [service_settings] Invalid value [-2]. [num_threads] must be a positive integer;"},
		{"threads not a power of two", "x", SparseEmbedding, ss(elser + `,"num_allocations":1,"num_threads":3`), 400, arv,
			"Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"},
		{"threads above 32", "x", SparseEmbedding, ss(elser + `,"num_allocations":1,"num_threads":64`), 400, arv,
			"Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"},
		{"allocations with adaptive enabled", "x", SparseEmbedding, ss(elser + `,"num_allocations":2,"num_threads":6,"adaptive_allocations":{"enabled":true}`), 400, arv,
			"Validation Failed: 1: [number_of_allocations] cannot be set if adaptive allocations is enabled;2: [threads_per_allocation] must be a power of 2 less than or equal to 32;"},
		{"adaptive bounds", "x", SparseEmbedding, ss(elser + `,"num_threads":1,"adaptive_allocations":{"enabled":"yes","min_number_of_allocations":5,"max_number_of_allocations":2,"step":1}`), 400, valid,
			"Validation Failed: 1: field [enabled] is not of the expected type. The value [yes] cannot be converted to a [Boolean];2: [adaptive_allocations] does not allow the setting [step];3: [min_number_of_allocations] must not be larger than [max_number_of_allocations];"},
		{"adaptive negative min and zero max", "x", SparseEmbedding, ss(elser + `,"num_threads":1,"adaptive_allocations":{"enabled":true,"min_number_of_allocations":-1,"max_number_of_allocations":0}`), 400, valid,
			"Validation Failed: 1: [min_number_of_allocations] must be a non-negative integer or null;2: [max_number_of_allocations] must be a positive integer or null;"},
		{"model id required", "x", SparseEmbedding, ss(`"num_allocations":1,"num_threads":1`), 400, valid,
			"Validation Failed: 1: Error parsing service settings, model_id must be provided;"},
		{"built-in model for another task type", "x", TextEmbedding, ss(elser + `,"num_allocations":1,"num_threads":1`), 400, status,
			"Model [.elser_model_2] serves task type [sparse_embedding] and cannot be used for task type [text_embedding]"},
		{"invalid similarity and element type", "x", TextEmbedding, ss(`"model_id":"m","num_allocations":1,"num_threads":1,"similarity":"hamming","element_type":"bit"`), 400, valid,
			"Validation Failed: 1: [service_settings] Invalid value [hamming] received. [similarity] must be one of [cosine, dot_product, l2_norm];2: [service_settings] Invalid value [bit] received. [element_type] must be one of [byte, float];"},
		{"dimensions are measured, not given", "x", TextEmbedding, ss(`"model_id":"m","num_allocations":1,"num_threads":1,"dimensions":384`), 400, status,
			"Configuration contains settings [{dimensions=384}] unknown to the [elasticsearch] service"},
		{"rerank return_documents type", "x", Rerank, `{"service":"elasticsearch","service_settings":{"model_id":".rerank-v1","num_allocations":1,"num_threads":1},"task_settings":{"return_documents":"no"}}`, 400, valid,
			"Validation Failed: 1: field [return_documents] is not of the expected type. The value [no] cannot be converted to a [Boolean];"},
		{"max chunks without the chunk strategy", "x", Rerank, ss(`"model_id":".rerank-v1","num_allocations":1,"num_threads":1,"long_document_strategy":"truncate","max_chunks_per_doc":2`), 400, valid,
			"Validation Failed: 1: The [max_chunks_per_doc] setting requires [long_document_strategy] to be set to [chunk];"},
		{"unknown long document strategy and zero chunks", "x", Rerank, ss(`"model_id":".rerank-v1","num_allocations":1,"num_threads":1,"long_document_strategy":"split","max_chunks_per_doc":0`), 400, valid,
			"Validation Failed: 1: [service_settings] Invalid value [split] received. [long_document_strategy] must be one of [chunk, truncate];2: [service_settings] Invalid value [0]. [max_chunks_per_doc] must be a positive integer;"},
		{"long documents are Elastic Rerank's only", "x", Rerank, ss(`"model_id":"my-cross-encoder","num_allocations":1,"num_threads":1,"long_document_strategy":"chunk"`), 400, status,
			"Configuration contains settings [{long_document_strategy=chunk}] unknown to the [elasticsearch] service"},
		{"chunking without strategy", "x", SparseEmbedding, `{"service":"elasticsearch","service_settings":{},"chunking_settings":{"max_chunk_size":10}}`, 400, iae,
			"Can't generate Chunker without ChunkingStrategy provided"},
		{"unknown chunking strategy", "x", SparseEmbedding, `{"service":"elasticsearch","service_settings":{},"chunking_settings":{"strategy":"paragraph"}}`, 400, iae,
			"Invalid chunkingStrategy paragraph"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePut(tt.id, tt.task, []byte(tt.body))
			wantError(t, err, tt.status, tt.typ, tt.reason)
		})
	}
}

func TestParseChunkingRejects(t *testing.T) {
	tests := []struct {
		chunking string
		reason   string
	}{
		{`{"strategy":"word","max_chunk_size":5,"overlap":1}`,
			"Validation Failed: 1: [chunking_settings] Invalid value [5.0]. [max_chunk_size] must be greater than or equal to [10.0];"},
		{`{"strategy":"word","max_chunk_size":250,"overlap":130}`,
			"Validation Failed: 1: [chunking_settings] Invalid value [130.0]. [overlap] must be less than or equal to [125.0];"},
		{`{"strategy":"word","max_chunk_size":250,"overlap":0}`,
			"Validation Failed: 1: [chunking_settings] Invalid value [0]. [overlap] must be a positive integer;"},
		{`{"strategy":"word","max_chunk_size":250}`,
			"Validation Failed: 1: [chunking_settings] does not contain the required setting [overlap];"},
		{`{"strategy":"word","overlap":3,"sentence_overlap":1}`,
			"Validation Failed: 1: Word based chunking settings can not have the following settings: [sentence_overlap];2: [chunking_settings] does not contain the required setting [max_chunk_size];"},
		{`{"strategy":"sentence","max_chunk_size":19}`,
			"Validation Failed: 1: [chunking_settings] Invalid value [19.0]. [max_chunk_size] must be greater than or equal to [20.0];"},
		{`{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":2,"overlap":1}`,
			"Validation Failed: 1: Sentence based chunking settings can not have the following settings: [overlap];2: sentence_overlap[2] must be either 0 or 1;"},
		{`{"strategy":"recursive","max_chunk_size":20,"separators":["\n"],"separator_group":"markdown"}`,
			"Validation Failed: 1: Recursive chunking settings can not have both separators and separator_set;"},
		{`{"strategy":"recursive","max_chunk_size":20,"separators":[]}`,
			"Validation Failed: 1: Recursive chunking settings can not have an empty list of separators;"},
		{`{"strategy":"recursive","max_chunk_size":20,"separator_group":"html","extra":1}`,
			"Validation Failed: 1: Recursive chunking settings can not have the following settings: [extra];2: [chunking_settings] Invalid value [html] received. [separator_group] must be one of [markdown, plaintext];"},
		{`{"strategy":"recursive","max_chunk_size":20,"separators":["a",5]}`,
			"Validation Failed: 1: field [separators] is not of the expected type. The value [5] cannot be converted to a [String];"},
		{`{"strategy":"recursive","max_chunk_size":20,"separators":"\n"}`,
			"Validation Failed: 1: field [separators] is not of the expected type. The value [\n] cannot be converted to a [List];"},
		{`{"strategy":"recursive","max_chunk_size":20,"separators":[` + strings.Repeat(`"a",`, 50) + `"a"]}`,
			"Validation Failed: 1: separators list size [51] must not exceed [50];"},
	}
	for _, tt := range tests {
		t.Run(tt.chunking, func(t *testing.T) {
			body := `{"service":"elasticsearch","service_settings":{"model_id":".elser_model_2","num_allocations":1,"num_threads":1},"chunking_settings":` + tt.chunking + `}`
			_, err := ParsePut("x", SparseEmbedding, []byte(body))
			wantError(t, err, 400, eserror.TypeValidation, tt.reason)
		})
	}
}

func TestParseStored(t *testing.T) {
	t.Run("legacy embedding endpoint without chunking gets the old default", func(t *testing.T) {
		ep, err := ParseStored("old", []byte(`{"inference_id":"old","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":".elser_model_2"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mustJSON(t, ep.Chunking), `{"strategy":"word","max_chunk_size":250,"overlap":100}`; got != want {
			t.Errorf("chunking = %s; want %s", got, want)
		}
	})
	t.Run("measured dimensions are kept", func(t *testing.T) {
		const v = `{"inference_id":"m.x","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":1,"model_id":"m","dimensions":384,"similarity":"cosine","element_type":"float"},"chunking_settings":{"strategy":"none"}}`
		ep, err := ParseStored("m=x", []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if got := mustJSON(t, ep); got != v {
			t.Errorf("round trip = %s; want %s", got, v)
		}
	})
	t.Run("reserved defaults read back", func(t *testing.T) {
		for _, def := range DefaultEndpoints() {
			v := mustJSON(t, def)
			ep, err := ParseStored(Token(def.InferenceID), []byte(v))
			if err != nil {
				t.Fatalf("%s: %v", def.InferenceID, err)
			}
			if got := mustJSON(t, ep); got != v {
				t.Errorf("%s round trip = %s; want %s", def.InferenceID, got, v)
			}
		}
	})
	bad := []struct{ name, key, value, reason string }{
		{"id differs from key", "a", `{"inference_id":"b","task_type":"rerank"}`, "stored inference_id [b] does not match its key [a]"},
		{"no task type", "a", `{"inference_id":"a","service":"elasticsearch"}`, "model is missing required setting [task_type]"},
		{"invalid threads", "a", `{"inference_id":"a","task_type":"rerank","service":"elasticsearch","service_settings":{"num_allocations":1,"num_threads":5,"model_id":".rerank-v1"}}`,
			"Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseStored(tt.key, []byte(tt.value))
			var e *eserror.Error
			if !errors.As(err, &e) || e.Reason != tt.reason {
				t.Fatalf("ParseStored error = %v; want reason %q", err, tt.reason)
			}
		})
	}
	if _, err := ParseStored("a", []byte(`not json`)); err == nil {
		t.Error("ParseStored(not json) succeeded")
	}
}

func TestDefaultEndpointsJSON(t *testing.T) {
	want := []string{
		`{"inference_id":".elser-2-elasticsearch","task_type":"sparse_embedding","service":"elasticsearch","service_settings":{"num_threads":1,"model_id":".elser_model_2_linux-x86_64","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":32}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		`{"inference_id":".multilingual-e5-small-elasticsearch","task_type":"text_embedding","service":"elasticsearch","service_settings":{"num_threads":1,"model_id":".multilingual-e5-small_linux-x86_64","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":32}},"chunking_settings":{"strategy":"sentence","max_chunk_size":250,"sentence_overlap":1}}`,
		`{"inference_id":".rerank-v1-elasticsearch","task_type":"rerank","service":"elasticsearch","service_settings":{"num_threads":1,"model_id":".rerank-v1","adaptive_allocations":{"enabled":true,"min_number_of_allocations":0,"max_number_of_allocations":32}},"task_settings":{"return_documents":true}}`,
	}
	defs := DefaultEndpoints()
	if len(defs) != len(want) {
		t.Fatalf("DefaultEndpoints() has %d endpoints; want %d", len(defs), len(want))
	}
	for i, def := range defs {
		if got := mustJSON(t, def); got != want[i] {
			t.Errorf("default %d = %s; want %s", i, got, want[i])
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for id, token := range map[string]string{
		".elser-2-elasticsearch": "=elser-2-elasticsearch",
		"a.b.c":                  "a=b=c",
		"plain_id-1":             "plain_id-1",
	} {
		if got := Token(id); got != token {
			t.Errorf("Token(%q) = %q; want %q", id, got, token)
		}
		if got := IDFromToken(token); got != id {
			t.Errorf("IDFromToken(%q) = %q; want %q", token, got, id)
		}
	}
}

func TestParseTaskType(t *testing.T) {
	for in, want := range map[string]TaskType{"rerank": Rerank, " Sparse_Embedding ": SparseEmbedding, "ANY": Any, "completion": "completion"} {
		got, err := ParseTaskType(in)
		if err != nil || got != want {
			t.Errorf("ParseTaskType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseTaskType("embeddings")
	wantError(t, err, 400, eserror.TypeStatus, "Unknown task_type [embeddings]")
}
