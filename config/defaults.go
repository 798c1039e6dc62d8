package config

import "strings"

// Ids of the reserved endpoints every cluster has, as in Elasticsearch.
const (
	DefaultELSERID  = ".elser-2-elasticsearch"
	DefaultE5ID     = ".multilingual-e5-small-elasticsearch"
	DefaultRerankID = ".rerank-v1-elasticsearch"
)

// IsDefaultID reports whether id is reserved. User ids cannot start with a
// dot, so every id that does is reserved to jetinfer.
func IsDefaultID(id string) bool {
	return strings.HasPrefix(id, ".")
}

// DefaultEndpoints returns the reserved endpoints, sorted by id. They scale
// adaptively between 0 and 32 allocations, so they cost nothing until used.
// jetinfer runs on linux-x86_64, so the platform-optimised models are chosen,
// as Elasticsearch does on such clusters.
func DefaultEndpoints() []Endpoint {
	adaptive := func() ServiceSettings {
		lo, hi := 0, DefaultMaxAllocations
		return ServiceSettings{
			NumThreads:          1,
			AdaptiveAllocations: &AdaptiveAllocations{Enabled: true, Min: &lo, Max: &hi},
		}
	}
	elser := adaptive()
	elser.ModelID = ModelELSERLinux
	e5 := adaptive()
	e5.ModelID = ModelE5SmallLinux
	rerank := adaptive()
	rerank.ModelID = ModelRerankV1
	return []Endpoint{
		{InferenceID: DefaultELSERID, TaskType: SparseEmbedding, Service: ServiceName, ServiceSettings: elser, Chunking: DefaultChunking()},
		{InferenceID: DefaultE5ID, TaskType: TextEmbedding, Service: ServiceName, ServiceSettings: e5, Chunking: DefaultChunking()},
		{InferenceID: DefaultRerankID, TaskType: Rerank, Service: ServiceName, ServiceSettings: rerank, TaskSettings: &RerankTaskSettings{ReturnDocuments: true}},
	}
}

// DefaultEndpoint returns the reserved endpoint with the given id.
func DefaultEndpoint(id string) (Endpoint, bool) {
	for _, ep := range DefaultEndpoints() {
		if ep.InferenceID == id {
			return ep, true
		}
	}
	return Endpoint{}, false
}
