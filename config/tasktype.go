package config

import (
	"strings"

	"github.com/jetinfer/jetinfer/eserror"
)

// TaskType is an inference task type as Elasticsearch names it.
type TaskType string

// The task types the elasticsearch service serves, plus Any, which stands for
// "not given in the URL".
const (
	TextEmbedding   TaskType = "text_embedding"
	SparseEmbedding TaskType = "sparse_embedding"
	Rerank          TaskType = "rerank"
	Any             TaskType = "any"
)

// knownTaskTypes are all the task types Elasticsearch's TaskType enum knows;
// a URL naming one of the others is a valid request for a service that does
// not support it, not an unknown task type.
var knownTaskTypes = []TaskType{
	TextEmbedding, SparseEmbedding, Rerank, "completion", "chat_completion", "embedding", Any,
}

// ParseTaskType parses a task type as Elasticsearch's TaskType.fromString does
// (trimmed, case-insensitive), failing with its 400 "Unknown task_type [x]".
func ParseTaskType(s string) (TaskType, error) {
	norm := TaskType(strings.ToLower(strings.TrimSpace(s)))
	for _, t := range knownTaskTypes {
		if t == norm {
			return t, nil
		}
	}
	return "", eserror.BadRequest("Unknown task_type [%s]", s)
}

// Supported reports whether the elasticsearch service serves t.
func (t TaskType) Supported() bool {
	return t == TextEmbedding || t == SparseEmbedding || t == Rerank
}

// Chunked reports whether endpoints of this task type carry chunking
// settings: embeddings do, rerank does not.
func (t TaskType) Chunked() bool {
	return t == TextEmbedding || t == SparseEmbedding
}

// Matches reports whether t, a task type from a URL, selects an endpoint of
// type other: Any selects every endpoint.
func (t TaskType) Matches(other TaskType) bool {
	return t == Any || t == other
}
