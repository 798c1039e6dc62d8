package pipeline

import (
	"context"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
)

// Runner runs one endpoint's requests on its loaded model.
type Runner struct {
	Model    *inference.Model
	Endpoint config.Endpoint
	// MaxResultBytes bounds an ingest document's result body: a document
	// whose chunks could not fit fails before they are embedded (see
	// ChunkedInferDocs). 0 means no bound.
	MaxResultBytes int64
}

// Infer answers a validated POST _inference request (see Infer).
func (r Runner) Infer(ctx context.Context, req inferapi.Request) ([]byte, error) {
	return Infer(ctx, r.Model, r.Endpoint, req)
}

// Ingest returns one result body per ingest document: the ChunkedInfer
// body for embedding endpoints, with documents of the same input type
// embedded by one engine call, and the Infer body (a ranking) for rerank.
func (r Runner) Ingest(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
	out := make([][]byte, len(docs))
	if r.Endpoint.TaskType == config.Rerank {
		for i, d := range docs {
			body, err := Infer(ctx, r.Model, r.Endpoint, d)
			if err != nil {
				return nil, err
			}
			out[i] = body
		}
		return out, nil
	}
	byType := map[inferapi.InputType][]int{}
	var order []inferapi.InputType
	for i, d := range docs {
		if _, ok := byType[d.InputType]; !ok {
			order = append(order, d.InputType)
		}
		byType[d.InputType] = append(byType[d.InputType], i)
	}
	for _, t := range order {
		idx := byType[t]
		inputs := make([][]string, len(idx))
		for k, i := range idx {
			inputs[k] = docs[i].Input
		}
		bodies, err := ChunkedInferDocs(ctx, r.Model, r.Endpoint, inputs, t, r.MaxResultBytes)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			out[i] = bodies[k]
		}
	}
	return out, nil
}
