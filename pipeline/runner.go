package pipeline

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
	"github.com/rs/zerolog"
)

// Runner runs one endpoint's requests on its loaded model.
type Runner struct {
	Model    *inference.Model
	Endpoint config.Endpoint
	// MaxResultBytes bounds an ingest document's result body: a document
	// whose chunks could not fit fails before they are embedded (see
	// ChunkedInferDocs). 0 means no bound.
	MaxResultBytes int64
	// Log gets the panics of an input embedded alone (see ingestOne).
	Log zerolog.Logger
	// split is chunking.Split when nil; tests make an input fail with it.
	split splitFunc
}

func (r Runner) splitter() splitFunc {
	if r.split != nil {
		return r.split
	}
	return chunking.Split
}

// Infer answers a validated POST _inference request (see Infer).
func (r Runner) Infer(ctx context.Context, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error) {
	return Infer(ctx, r.Model, r.Endpoint, req, opts)
}

// Ingest returns one result body per ingest document: the ChunkedInfer
// body for embedding endpoints, with documents of the same input type
// embedded by one engine call, and the Infer body (a ranking) for rerank.
func (r Runner) Ingest(ctx context.Context, docs []inferapi.Request) ([][]byte, error) {
	out := make([][]byte, len(docs))
	if r.Endpoint.TaskType == config.Rerank {
		for i, d := range docs {
			res, err := Infer(ctx, r.Model, r.Endpoint, d, inferapi.Options{})
			if err != nil {
				return nil, err
			}
			out[i] = res.Body
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
		var bodies [][]byte
		var err error
		if len(idx) == 1 {
			var body []byte
			body, err = r.ingestOne(ctx, inputs[0], t)
			bodies = [][]byte{body}
		} else {
			bodies, err = chunkedInferDocs(ctx, r.Model, r.Endpoint, inputs, t, r.MaxResultBytes, r.splitter())
		}
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			out[i] = bodies[k]
		}
	}
	return out, nil
}

// ingestOne embeds one document's inputs together. When that panics (a
// hostile input: the same input panics again, so no retry can mend it) and
// the document has several inputs, each is embedded alone: one that panics
// gets its own error in the body's "input_errors", with no chunks, as
// Elasticsearch's ChunkedInferenceError gives one input its error, and the
// others keep their chunks. An ordinary error (the engine, a timeout) may
// pass: the document fails as a whole, to be attempted again, and so does
// one whose every input panics (the panic is raised again, for the caller
// to recover).
func (r Runner) ingestOne(ctx context.Context, inputs []string, t inferapi.InputType) ([]byte, error) {
	if len(inputs) < 2 {
		bodies, err := chunkedInferDocs(ctx, r.Model, r.Endpoint, [][]string{inputs}, t, r.MaxResultBytes, r.splitter())
		if err != nil {
			return nil, err
		}
		return bodies[0], nil
	}
	var bodies [][]byte
	panicked, err := r.caught(func() (err error) {
		bodies, err = chunkedInferDocs(ctx, r.Model, r.Endpoint, [][]string{inputs}, t, r.MaxResultBytes, r.splitter())
		return err
	})
	if err == nil {
		return bodies[0], nil
	}
	if panicked == nil {
		return nil, err
	}
	results := make([][]chunkResult, len(inputs))
	errs := make([]error, len(inputs))
	failed := 0
	for i, in := range inputs {
		var inputPanic any
		inputPanic, errs[i] = r.caught(func() error {
			c, err := newChunkedRun(r.Model, r.Endpoint, [][]string{{in}}, 0, r.splitter())
			if err != nil {
				return err
			}
			res, err := embedDocs(ctx, r.Model, r.Endpoint.TaskType, [][]string{{in}}, c.chunked, t)
			if err == nil {
				results[i] = res[0][0]
			}
			return err
		})
		if errs[i] != nil && inputPanic == nil {
			return nil, errs[i] // may pass: the whole document is attempted again
		}
		if errs[i] != nil {
			failed++
		}
	}
	if failed == len(inputs) {
		if panicked != nil {
			panic(panicked)
		}
		return nil, err
	}
	w, werr := newBodyWriter(r.Model, r.Endpoint, r.MaxResultBytes)
	if werr != nil {
		return nil, werr
	}
	return w.write(results, errs)
}

// caught runs f; a panic in it is logged with its stack and returned, with
// an internal error as f's error.
func (r Runner) caught(f func() error) (panicked any, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.Log.Error().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg("ingest of an input panicked")
			panicked, err = p, eserror.Internal(fmt.Errorf("%v", p), "inference failed on an internal error")
		}
	}()
	return nil, f()
}
