package test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/elastic/go-elasticsearch/v9"
	"github.com/elastic/go-elasticsearch/v9/typedapi/inference/put"
	"github.com/elastic/go-elasticsearch/v9/typedapi/inference/putelasticsearch"
	"github.com/elastic/go-elasticsearch/v9/typedapi/types"
	"github.com/elastic/go-elasticsearch/v9/typedapi/types/enums/elasticsearchservicetype"
)

// TestOfficialGoClient drives jetinfer with Elastic's official Go client
// (typed API): it must accept every response, success and error alike.
func TestOfficialGoClient(t *testing.T) {
	n := startNode(t, nil)
	es, err := elasticsearch.NewTyped(elasticsearch.WithAddresses(n.base))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	info, err := es.Info().Do(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Version.Int != "9.1.0" || info.Tagline != "You Know, for Search" {
		t.Errorf("Info = %+v", info)
	}

	// The generic PUT, with a raw service_settings object.
	created, err := es.Inference.Put("my-elser").TaskType("sparse_embedding").Request(&put.Request{
		Service:         "elasticsearch",
		ServiceSettings: json.RawMessage(`{"model_id":".elser_model_2","num_allocations":2,"num_threads":1}`),
	}).Do(ctx)
	if err != nil {
		t.Fatalf("Inference.Put: %v", err)
	}
	if created.InferenceId != "my-elser" || created.TaskType.String() != "sparse_embedding" || created.Service != "elasticsearch" ||
		string(created.ServiceSettings) != `{"num_allocations":2,"num_threads":1,"model_id":".elser_model_2"}` ||
		created.ChunkingSettings == nil || created.ChunkingSettings.Strategy == nil || *created.ChunkingSettings.Strategy != "sentence" {
		t.Errorf("Inference.Put response = %+v", created)
	}

	// The service-specific PUT, with typed settings.
	threads, allocations := 2, 1
	reranker, err := es.Inference.PutElasticsearch("rerank", "my-reranker").Request(&putelasticsearch.Request{
		Service:         elasticsearchservicetype.Elasticsearch,
		ServiceSettings: types.ElasticsearchServiceSettings{ModelId: ".rerank-v1", NumThreads: threads, NumAllocations: &allocations},
		TaskSettings:    &types.ElasticsearchTaskSettings{ReturnDocuments: ptr(false)},
	}).Do(ctx)
	if err != nil {
		t.Fatalf("Inference.PutElasticsearch: %v", err)
	}
	if reranker.InferenceId != "my-reranker" || string(reranker.TaskSettings) != `{"return_documents":false}` || reranker.ChunkingSettings != nil {
		t.Errorf("Inference.PutElasticsearch response = %+v", reranker)
	}

	got, err := es.Inference.Get().InferenceId("my-elser").Do(ctx)
	if err != nil {
		t.Fatalf("Inference.Get: %v", err)
	}
	if len(got.Endpoints) != 1 || got.Endpoints[0].InferenceId != "my-elser" {
		t.Errorf("Inference.Get = %+v", got)
	}
	all, err := es.Inference.Get().Do(ctx)
	if err != nil {
		t.Fatalf("Inference.Get all: %v", err)
	}
	var ids []string
	for _, ep := range all.Endpoints {
		ids = append(ids, ep.InferenceId)
	}
	if want := []string{".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch", "my-elser", "my-reranker"}; !equal(ids, want) {
		t.Errorf("Inference.Get all ids = %v; want %v", ids, want)
	}

	deleted, err := es.Inference.Delete("my-elser").Do(ctx)
	if err != nil {
		t.Fatalf("Inference.Delete: %v", err)
	}
	if !deleted.Acknowledged {
		t.Errorf("Inference.Delete = %+v", deleted)
	}

	// Errors arrive as the client's typed ElasticsearchError.
	_, err = es.Inference.Get().InferenceId("my-elser").Do(ctx)
	var esErr *types.ElasticsearchError
	if !errors.As(err, &esErr) || esErr.Status != 404 || esErr.ErrorCause.Type != "resource_not_found_exception" ||
		esErr.ErrorCause.Reason == nil || *esErr.ErrorCause.Reason != "Inference endpoint not found [my-elser]" ||
		len(esErr.ErrorCause.RootCause) != 1 || esErr.ErrorCause.RootCause[0].Type != "resource_not_found_exception" {
		t.Errorf("Get of a deleted endpoint: err = %#v", err)
	}
	_, err = es.Inference.PutElasticsearch("sparse_embedding", "bad").Request(&putelasticsearch.Request{
		Service:         elasticsearchservicetype.Elasticsearch,
		ServiceSettings: types.ElasticsearchServiceSettings{ModelId: ".elser_model_2", NumThreads: 3, NumAllocations: &allocations},
	}).Do(ctx)
	if !errors.As(err, &esErr) || esErr.Status != 400 || esErr.ErrorCause.Type != "action_request_validation_exception" ||
		*esErr.ErrorCause.Reason != "Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;" {
		t.Errorf("PutElasticsearch with 3 threads: err = %#v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
