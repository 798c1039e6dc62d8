package config

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jetinfer/jetinfer/xcontent"
)

// ServiceName is the one service jetinfer implements; ServiceAliasELSER is
// its deprecated alias.
const (
	ServiceName       = "elasticsearch"
	ServiceAliasELSER = "elser"
)

// Built-in model ids of the elasticsearch service.
const (
	ModelELSERv1      = ".elser_model_1"
	ModelELSER        = ".elser_model_2"
	ModelELSERLinux   = ".elser_model_2_linux-x86_64"
	ModelE5Small      = ".multilingual-e5-small"
	ModelE5SmallLinux = ".multilingual-e5-small_linux-x86_64"
	ModelRerankV1     = ".rerank-v1"
)

// ModelFamily says which built-in model, if any, a model id names.
type ModelFamily int

// Model families. Any id that is not built in names a user-imported model.
const (
	FamilyImported ModelFamily = iota
	FamilyELSER
	FamilyE5
	FamilyRerank
)

// FamilyOf returns the family of modelID.
func FamilyOf(modelID string) ModelFamily {
	switch modelID {
	case ModelELSERv1, ModelELSER, ModelELSERLinux:
		return FamilyELSER
	case ModelE5Small, ModelE5SmallLinux:
		return FamilyE5
	case ModelRerankV1:
		return FamilyRerank
	}
	return FamilyImported
}

// ServedTask is the only task type a built-in model serves, "" for an
// imported model (its artifact says).
func ServedTask(modelID string) TaskType { return FamilyOf(modelID).servedTask() }

// servedTask is the only task type a built-in model family serves.
func (f ModelFamily) servedTask() TaskType {
	switch f {
	case FamilyELSER:
		return SparseEmbedding
	case FamilyE5:
		return TextEmbedding
	case FamilyRerank:
		return Rerank
	}
	return ""
}

// Endpoint is one inference endpoint definition: what PUT _inference stores
// and GET _inference returns.
type Endpoint struct {
	InferenceID     string
	TaskType        TaskType
	Service         string
	ServiceSettings ServiceSettings
	// TaskSettings is set for rerank endpoints only.
	TaskSettings *RerankTaskSettings
	// Chunking is set for embedding endpoints only.
	Chunking *ChunkingSettings
}

// ServiceSettings are the elasticsearch service's deployment settings.
type ServiceSettings struct {
	// NumAllocations is nil when adaptive allocations decide the count.
	NumAllocations      *int
	NumThreads          int
	ModelID             string
	AdaptiveAllocations *AdaptiveAllocations
	DeploymentID        string
	// Dense embedding details of user-imported text_embedding models.
	Dimensions  *int
	Similarity  string
	ElementType string
	// LongDocumentStrategy and MaxChunksPerDoc are Elastic Rerank's
	// (ElasticRerankerServiceSettings): "" or LongDocumentTruncate keeps
	// the beginning of each document; LongDocumentChunk scores a document
	// by its best chunk, of at most MaxChunksPerDoc (nil: all of them).
	LongDocumentStrategy string
	MaxChunksPerDoc      *int
}

// Values of ServiceSettings.LongDocumentStrategy.
const (
	LongDocumentTruncate = "truncate"
	LongDocumentChunk    = "chunk"
)

// AdaptiveAllocations bounds the allocation count that load decides.
type AdaptiveAllocations struct {
	Enabled bool
	Min     *int
	Max     *int
}

// RerankTaskSettings are the task settings of rerank endpoints.
type RerankTaskSettings struct {
	ReturnDocuments bool `json:"return_documents"`
}

// DefaultMaxAllocations caps adaptive allocations that set no maximum, as
// Elasticsearch's scaler does.
const DefaultMaxAllocations = 32

// Token is the form of an inference id used as KV key and subject token:
// '.' is not allowed inside either, so every '.' becomes '='.
func Token(inferenceID string) string {
	return strings.ReplaceAll(inferenceID, ".", "=")
}

// IDFromToken inverts Token.
func IDFromToken(token string) string {
	return strings.ReplaceAll(token, "=", ".")
}

// InitialAllocations is the allocation count a deployment starts with:
// num_allocations, or the adaptive minimum but at least one, as
// Elasticsearch's computeNumberOfAllocations.
func (s ServiceSettings) InitialAllocations() int {
	if s.NumAllocations != nil {
		return *s.NumAllocations
	}
	if a := s.AdaptiveAllocations; a != nil && a.Min != nil && *a.Min > 0 {
		return *a.Min
	}
	return 1
}

type adaptiveJSON struct {
	Enabled bool `json:"enabled"`
	Min     *int `json:"min_number_of_allocations,omitempty"`
	Max     *int `json:"max_number_of_allocations,omitempty"`
}

// MarshalJSON writes the settings as Elasticsearch does (also in the
// trained model deployment stats).
func (a AdaptiveAllocations) MarshalJSON() ([]byte, error) {
	return xcontent.Marshal(adaptiveJSON(a))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *AdaptiveAllocations) UnmarshalJSON(data []byte) error {
	var j adaptiveJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*a = AdaptiveAllocations(j)
	return nil
}

type serviceSettingsJSON struct {
	NumAllocations      *int          `json:"num_allocations,omitempty"`
	NumThreads          int           `json:"num_threads"`
	ModelID             string        `json:"model_id"`
	AdaptiveAllocations *adaptiveJSON `json:"adaptive_allocations,omitempty"`
	DeploymentID        string        `json:"deployment_id,omitempty"`
	Dimensions          *int          `json:"dimensions,omitempty"`
	Similarity          string        `json:"similarity,omitempty"`
	ElementType         string        `json:"element_type,omitempty"`
	LongDocument        string        `json:"long_document_strategy,omitempty"`
	MaxChunksPerDoc     *int          `json:"max_chunks_per_doc,omitempty"`
}

// MarshalJSON writes the settings in Elasticsearch's field order, omitting
// what Elasticsearch omits when null.
func (s ServiceSettings) MarshalJSON() ([]byte, error) {
	out := serviceSettingsJSON{
		NumAllocations:  s.NumAllocations,
		NumThreads:      s.NumThreads,
		ModelID:         s.ModelID,
		DeploymentID:    s.DeploymentID,
		Dimensions:      s.Dimensions,
		Similarity:      s.Similarity,
		ElementType:     s.ElementType,
		LongDocument:    s.LongDocumentStrategy,
		MaxChunksPerDoc: s.MaxChunksPerDoc,
	}
	if a := s.AdaptiveAllocations; a != nil {
		out.AdaptiveAllocations = &adaptiveJSON{Enabled: a.Enabled, Min: a.Min, Max: a.Max}
	}
	return xcontent.Marshal(out)
}

type endpointJSON struct {
	InferenceID     string              `json:"inference_id"`
	TaskType        TaskType            `json:"task_type"`
	Service         string              `json:"service"`
	ServiceSettings ServiceSettings     `json:"service_settings"`
	TaskSettings    *RerankTaskSettings `json:"task_settings,omitempty"`
	Chunking        *ChunkingSettings   `json:"chunking_settings,omitempty"`
}

// MarshalJSON writes the endpoint exactly as GET _inference returns it.
func (e Endpoint) MarshalJSON() ([]byte, error) {
	return xcontent.Marshal(endpointJSON(e))
}

func (e Endpoint) String() string {
	return fmt.Sprintf("%s (%s, %s)", e.InferenceID, e.TaskType, e.ServiceSettings.ModelID)
}
