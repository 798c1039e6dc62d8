// Package rerankapi is the rerank API of Cohere (POST /v2/rerank, and
// /v1/rerank, which Jina's API shares) as jetinfer serves it over its
// rerank endpoints: the request with its validation, the response (Cohere's
// fields, and Jina's model field, so that either client reads it) and
// Cohere's error body. The model of a request is an inference id. It is
// pure Go; the HTTP API routes to it.
package rerankapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/jetinfer/jetinfer/eserror"
)

// Request is a POST /v1/rerank or /v2/rerank body.
type Request struct {
	Model     string
	Query     string
	Documents []string
	// TopN, when positive, keeps the best TopN documents.
	TopN int
	// ReturnDocuments puts each document's text in its result.
	ReturnDocuments bool
}

// requestFields are the fields of a rerank request, in the order they are
// checked; the last three change nothing here (see ParseRequest).
var requestFields = []string{"model", "query", "documents", "top_n", "return_documents", "max_tokens_per_doc", "rank_fields", "max_chunks_per_doc"}

// ParseRequest decodes and validates a rerank body. Documents are strings
// or, as Cohere's v1 and Jina's API allow, objects with a "text" field.
// Fields of Cohere's and Jina's APIs that change nothing here
// (max_tokens_per_doc, rank_fields, max_chunks_per_doc) are accepted and
// ignored: the endpoint's model truncates to its own limit.
func ParseRequest(body []byte) (Request, error) {
	var req Request
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return req, invalid("invalid request: the body must be a JSON object")
	}
	// Unknown fields first, then the fields in a fixed order: the same
	// body always gets the same error.
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(requestFields, name) {
			return req, invalid(fmt.Sprintf("invalid request: unknown field: parameter %s is not a valid field", name))
		}
	}
	for _, name := range requestFields {
		raw, ok := fields[name]
		if !ok || (name == "top_n" || name == "return_documents") && isNull(raw) {
			continue // null is the default of an optional field
		}
		var err error
		switch name {
		case "model":
			err = field(raw, name, &req.Model)
		case "query":
			err = field(raw, name, &req.Query)
		case "documents":
			req.Documents, err = parseDocuments(raw)
		case "top_n":
			err = field(raw, name, &req.TopN)
			if err == nil && req.TopN < 1 {
				err = invalid(fmt.Sprintf("invalid request: top_n must be greater than 0, got %d", req.TopN))
			}
		case "return_documents":
			err = field(raw, name, &req.ReturnDocuments)
		}
		if err != nil {
			return req, err
		}
	}
	switch {
	case req.Model == "":
		return req, invalid("invalid request: model must be specified")
	case req.Query == "":
		return req, invalid("invalid request: query must not be empty")
	case len(req.Documents) == 0:
		return req, invalid("invalid request: list of documents must not be empty")
	}
	return req, nil
}

func parseDocuments(raw json.RawMessage) ([]string, error) {
	var docs []json.RawMessage
	if err := json.Unmarshal(raw, &docs); err != nil {
		return nil, invalid("invalid request: documents must be an array of strings")
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		if json.Unmarshal(d, &out[i]) == nil && !isNull(d) {
			continue
		}
		var obj struct {
			Text *string `json:"text"`
		}
		if json.Unmarshal(d, &obj) != nil || obj.Text == nil {
			return nil, invalid(fmt.Sprintf("invalid request: documents[%d] must be a string or an object with a text field", i))
		}
		out[i] = *obj.Text
	}
	return out, nil
}

func field(raw json.RawMessage, name string, v any) error {
	if err := json.Unmarshal(raw, v); err != nil || isNull(raw) {
		return invalid(fmt.Sprintf("invalid request: %s has the wrong type", name))
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// Result is one ranked document.
type Result struct {
	Index          int     `json:"index"`
	RelevanceScore float64 `json:"relevance_score"`
	Document       *struct {
		Text string `json:"text"`
	} `json:"document,omitempty"`
}

// Ranked reads an Elasticsearch rerank response,
// {"rerank":[{"index":…,"relevance_score":…,"text":…}, …]}, best first.
func Ranked(esBody []byte) ([]Result, error) {
	var resp struct {
		Rerank []struct {
			Index          int     `json:"index"`
			RelevanceScore float64 `json:"relevance_score"`
			Text           *string `json:"text"`
		} `json:"rerank"`
	}
	if err := json.Unmarshal(esBody, &resp); err != nil {
		return nil, fmt.Errorf("read rerank response: %w", err)
	}
	out := make([]Result, len(resp.Rerank))
	for i, r := range resp.Rerank {
		out[i] = Result{Index: r.Index, RelevanceScore: r.RelevanceScore}
		if r.Text != nil {
			out[i].Document = &struct {
				Text string `json:"text"`
			}{*r.Text}
		}
	}
	return out, nil
}

// Response is the body answering a rerank request with its results, best
// first: Cohere's id, results and meta, and Jina's model.
func Response(id, model, apiVersion string, results []Result) []byte {
	if results == nil {
		results = []Result{}
	}
	type version struct {
		Version string `json:"version"`
	}
	type billed struct {
		SearchUnits int `json:"search_units"`
	}
	type meta struct {
		APIVersion  version `json:"api_version"`
		BilledUnits billed  `json:"billed_units"`
	}
	b, _ := json.Marshal(struct {
		ID      string   `json:"id"`
		Model   string   `json:"model"`
		Results []Result `json:"results"`
		Meta    meta     `json:"meta"`
	}{id, model, results, meta{version{apiVersion}, billed{1}}})
	return b
}

// Error is an error in Cohere's body, {"message":…}.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// MarshalJSON writes the body.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Message string `json:"message"`
	}{e.Message})
}

func invalid(message string) *Error { return &Error{Status: http.StatusBadRequest, Message: message} }

// ModelNotFound answers a request for a model that does not exist.
func ModelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("model '%s' not found, make sure the model name is an inference endpoint id", model)}
}

// NotRerank answers a request to an endpoint of another task.
func NotRerank(model, taskType string) *Error {
	return invalid(fmt.Sprintf("invalid request: model '%s' does not rerank: its task type is [%s], not [rerank]", model, taskType))
}

// FromES translates an Elasticsearch error, keeping its status and reason.
func FromES(e *eserror.Error) *Error {
	msg := e.Reason
	if e.Cause != nil && e.Cause.Reason != "" {
		msg += ": " + e.Cause.Reason
	}
	return &Error{Status: e.Status, Message: msg}
}
