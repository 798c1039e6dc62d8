package pipeline

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/xcontent"
)

// Infer runs a validated POST _inference request on the endpoint's loaded
// model and returns the response body exactly as Elasticsearch writes it:
// {"text_embedding":[{"embedding":[…]}]}, {"sparse_embedding":[{"is_truncated":…,
// "embedding":{token:weight}}]} or {"rerank":[{"index":…,"relevance_score":…,"text":…}]}.
// Like Elasticsearch's inference API it does not chunk (inputs longer than
// the model's limit are truncated) except for an Elastic Rerank endpoint
// whose long_document_strategy is chunk (see rerankChunked). opts come from the other APIs' routes:
// dimensions apply to dense embeddings only.
func Infer(ctx context.Context, m *inference.Model, ep config.Endpoint, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error) {
	var res inferapi.Result
	if opts.Dimensions > 0 && ep.TaskType != config.TextEmbedding {
		return res, eserror.BadRequest("[dimensions] applies to text_embedding endpoints only, not to [%s]", ep.TaskType)
	}
	// A dense model's size is known once loaded (measured when nothing
	// states it): checked before the model runs.
	if d := m.Spec().Dimensions; opts.Dimensions > d {
		return res, eserror.BadRequest("[dimensions] must be at most [%d], the model's embedding size, but was [%d]", d, opts.Dimensions)
	}
	switch ep.TaskType {
	case config.TextEmbedding:
		// The tokens come along: only the dense routes report usage.
		vecs, tokens, err := m.EmbedCounted(ctx, req.Input, modelInputType(req.InputType))
		if err != nil {
			return res, err
		}
		res.Tokens = tokens
		if opts.Dimensions > 0 {
			truncateDimensions(vecs, opts.Dimensions, m.Spec().Normalize)
		}
		res.Body = denseResponse(vecs)
	case config.SparseEmbedding:
		embs, err := m.SparseEmbed(ctx, req.Input, modelInputType(req.InputType))
		if err != nil {
			return res, err
		}
		res.Body = sparseResponse(embs)
	case config.Rerank:
		if req.Query == nil {
			return res, fmt.Errorf("rerank request without a query")
		}
		var scores []float32
		var err error
		if ss := ep.ServiceSettings; ss.LongDocumentStrategy == config.LongDocumentChunk {
			scores, err = rerankChunked(ctx, m, *req.Query, req.Input, ss.MaxChunksPerDoc)
		} else {
			scores, err = m.Rerank(ctx, *req.Query, req.Input)
		}
		if err != nil {
			return res, err
		}
		res.Body = inferapi.RerankResponse(inferapi.Rank(scores, req.TopN), req.Input, req.IncludeDocuments(ep.TaskSettings))
	default:
		return res, fmt.Errorf("task type %s has no inference", ep.TaskType)
	}
	return res, nil
}

// truncateDimensions keeps the first dims values of each vector
// (Matryoshka truncation) and, for a model that normalizes, normalizes
// them again: the same as truncating before the normalization, since
// scaling a vector does not change its normalized truncation.
func truncateDimensions(vecs [][]float32, dims int, normalized bool) {
	for i, v := range vecs {
		v = v[:dims]
		if normalized {
			inference.Normalize(v)
		}
		vecs[i] = v
	}
}

// modelInputType maps the request's input_type to the model's prefixes:
// search and ingest select one, the others none (as Elasticsearch's
// buildInferenceRequest).
func modelInputType(t inferapi.InputType) inference.InputType {
	switch t {
	case inferapi.InputSearch:
		return inference.InputSearch
	case inferapi.InputIngest:
		return inference.InputIngest
	}
	return ""
}

// The bodies are written by hand: embeddings are large, and Java's float
// formatting ("3.0", "1.0E-5") is not encoding/json's.

func denseResponse(vecs [][]float32) []byte {
	b := []byte(`{"text_embedding":[`)
	for i, v := range vecs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"embedding":[`...)
		for j, x := range v {
			if j > 0 {
				b = append(b, ',')
			}
			b = xcontent.AppendJavaFloat(b, x)
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

func sparseResponse(embs []inference.SparseEmbedding) []byte {
	b := []byte(`{"sparse_embedding":[`)
	for i, e := range embs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"is_truncated":`...)
		b = strconv.AppendBool(b, e.Truncated)
		b = append(b, `,"embedding":{`...)
		for j, wt := range e.Tokens {
			if j > 0 {
				b = append(b, ',')
			}
			key, _ := xcontent.Marshal(wt.Token)
			b = append(append(b, key...), ':')
			b = xcontent.AppendJavaFloat(b, wt.Weight)
		}
		b = append(b, "}}"...)
	}
	return append(b, "]}"...)
}
