package inferapi

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/jetinfer/jetinfer/config"
)

// SplitRequest cuts a request into parts of at most maxInputs inputs whose
// input text adds up to at most maxBytes (a single larger input is a part of
// its own), so that a request of any size can be served in pieces, each
// small enough for one message, and by several allocations at once.
// MergeResponses puts the answers back together. A request that fits is
// returned whole. Rerank parts keep the query, and rank without top_n and
// without the documents' text: both are applied after the merge.
func SplitRequest(req Request, maxInputs, maxBytes int) []Request {
	if len(req.Input) <= maxInputs && inputBytes(req.Input) <= maxBytes {
		return []Request{req}
	}
	var parts []Request
	start, size := 0, 0
	for i, in := range req.Input {
		if i > start && (i-start == maxInputs || size+len(in) > maxBytes) {
			parts = append(parts, req.part(start, i))
			start, size = i, 0
		}
		size += len(in)
	}
	return append(parts, req.part(start, len(req.Input)))
}

func (r Request) part(from, to int) Request {
	p := r
	p.Input = r.Input[from:to]
	if r.Query != nil {
		no := false
		p.TopN, p.ReturnDocuments = nil, &no
	}
	return p
}

func inputBytes(inputs []string) int {
	n := 0
	for _, in := range inputs {
		n += len(in)
	}
	return n
}

// Marshal writes the request as a POST _inference body.
func (r Request) Marshal() ([]byte, error) { return json.Marshal(r) }

// MergeResponses joins the responses to SplitRequest's parts, in order,
// into the response to the whole request: embeddings (and the tokens of an
// Options.Tokenize request) are concatenated, rerank scores are ranked
// together, then cut to top_n.
func MergeResponses(ep config.Endpoint, req Request, opts Options, parts [][]byte) ([]byte, error) {
	if len(parts) == 1 {
		return parts[0], nil
	}
	if opts.Tokenize {
		return concatArrays("tokens", parts)
	}
	switch ep.TaskType {
	case config.TextEmbedding, config.SparseEmbedding:
		return concatArrays(string(ep.TaskType), parts)
	case config.Rerank:
		scores := make([]float32, 0, len(req.Input))
		for i, p := range parts {
			var resp struct {
				Rerank []struct {
					Index int     `json:"index"`
					Score float32 `json:"relevance_score"`
				} `json:"rerank"`
			}
			if err := json.Unmarshal(p, &resp); err != nil {
				return nil, fmt.Errorf("part %d: %w", i, err)
			}
			base := len(scores)
			scores = append(scores, make([]float32, len(resp.Rerank))...)
			for _, r := range resp.Rerank {
				if r.Index < 0 || base+r.Index >= len(scores) {
					return nil, fmt.Errorf("part %d: index %d out of range", i, r.Index)
				}
				scores[base+r.Index] = r.Score
			}
		}
		if len(scores) != len(req.Input) {
			return nil, fmt.Errorf("%d scores for %d documents", len(scores), len(req.Input))
		}
		return RerankResponse(Rank(scores, req.TopN), req.Input, req.IncludeDocuments(ep.TaskSettings)), nil
	}
	return nil, fmt.Errorf("task type %s has no inference", ep.TaskType)
}

// concatArrays joins bodies {"<key>":[…]} into one whose array holds all
// their items, in order.
func concatArrays(key string, parts [][]byte) ([]byte, error) {
	prefix := []byte(`{"` + key + `":[`)
	out := append([]byte(nil), prefix...)
	for i, p := range parts {
		if !bytes.HasPrefix(p, prefix) || !bytes.HasSuffix(p, []byte("]}")) {
			return nil, fmt.Errorf("part %d is not a %s response", i, key)
		}
		items := p[len(prefix) : len(p)-2]
		if len(items) == 0 {
			continue
		}
		if len(out) > len(prefix) {
			out = append(out, ',')
		}
		out = append(out, items...)
	}
	return append(out, "]}"...), nil
}
