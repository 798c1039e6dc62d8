package pipeline

//lint:file-ignore ST1005 its errors are Elasticsearch's texts, word for word

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
	"github.com/jetinfer/jetinfer/xcontent"
)

// ChunkedInfer is what an ingest document's inputs become as Elasticsearch's
// semantic_text inference field (SemanticTextField, new format): each input
// is chunked with the endpoint's chunking settings (the legacy word 250/100
// when it has none; strategy none makes the whole input one chunk), all
// chunks of all inputs are embedded by one Embed or SparseEmbed call, so the
// engine batches them, and each input keeps at most chunking.MaxChunksPerInput
// chunks, merged as EmbeddingRequestChunker does (chunking.Slots, chunking.SlotChunks,
// MergeDense, MergeSparseEmbedding, a slot's chunks merged in order).
//
// The body is
//
//	{"inference_id":…,
//	 "model_settings":{"service":"elasticsearch","task_type":"sparse_embedding"},
//	 "chunking_settings":{…the endpoint's…},
//	 "chunks":[[{"start_offset":0,"end_offset":31,"embeddings":{token:weight,…}},…],…]}
//
// Dense model_settings add "dimensions" (the model's), "similarity" (the
// endpoint's service_settings.similarity, else the model's) and
// "element_type":"float", and dense embeddings are arrays. chunking_settings
// is omitted when the endpoint has none. Elasticsearch keys "chunks" by
// source field ({"<field>":[…]}); there are no fields here, so "chunks" holds
// one array per input, in input order. Offsets are UTF-16 code-unit offsets
// into the input. Rerank endpoints are not chunked and return an error.
func ChunkedInfer(ctx context.Context, m *inference.Model, ep config.Endpoint, inputs []string, inputType inferapi.InputType) ([]byte, error) {
	bodies, err := ChunkedInferDocs(ctx, m, ep, [][]string{inputs}, inputType)
	if err != nil {
		return nil, err
	}
	return bodies[0], nil
}

// ChunkedInferDocs is ChunkedInfer for several documents at once (each
// given by its inputs): the chunks of all of them go to the engine in one
// call, so short documents share batches. It returns one body per document.
func ChunkedInferDocs(ctx context.Context, m *inference.Model, ep config.Endpoint, docs [][]string, inputType inferapi.InputType) ([][]byte, error) {
	if ep.TaskType != config.TextEmbedding && ep.TaskType != config.SparseEmbedding {
		return nil, fmt.Errorf("task type %s is not chunked", ep.TaskType)
	}
	settings := config.LegacyChunking()
	if ep.Chunking != nil {
		settings = ep.Chunking
	}
	// chunks holds every input of every document, documents in order.
	var chunks [][]chunking.Chunk
	var texts []string
	for _, inputs := range docs {
		for _, in := range inputs {
			cs, err := chunking.Split(in, *settings)
			if err != nil {
				return nil, err
			}
			chunks = append(chunks, cs)
			for _, c := range cs {
				texts = append(texts, c.Text(in))
			}
		}
	}
	results := make([][]chunkResult, len(chunks))
	ms := modelSettings{taskType: ep.TaskType}
	switch ep.TaskType {
	case config.TextEmbedding:
		vecs, err := m.Embed(ctx, texts, modelInputType(inputType))
		if err != nil {
			return nil, err
		}
		if len(vecs) != len(texts) {
			return nil, fmt.Errorf("Error the number of embedding responses [%d] does not equal the number of requests [%d]", len(vecs), len(texts))
		}
		ms.dimensions = m.Spec().Dimensions
		ms.similarity = m.Spec().Similarity
		if s := ep.ServiceSettings.Similarity; s != "" {
			ms.similarity = s
		}
		k := 0
		for i, cs := range chunks {
			results[i] = mergeSlots(cs, func(j int) chunkResult { return chunkResult{dense: vecs[k+j]} },
				func(acc *chunkResult, n int, next chunkResult) { acc.dense = MergeDense(acc.dense, n, next.dense, 1) })
			k += len(cs)
		}
	case config.SparseEmbedding:
		embs, err := m.SparseEmbed(ctx, texts, modelInputType(inputType))
		if err != nil {
			return nil, err
		}
		if len(embs) != len(texts) {
			return nil, fmt.Errorf("Error the number of embedding responses [%d] does not equal the number of requests [%d]", len(embs), len(texts))
		}
		k := 0
		for i, cs := range chunks {
			results[i] = mergeSlots(cs, func(j int) chunkResult { return chunkResult{sparse: embs[k+j]} },
				func(acc *chunkResult, _ int, next chunkResult) {
					acc.sparse = MergeSparseEmbedding(acc.sparse, next.sparse)
				})
			k += len(cs)
		}
	}
	bodies := make([][]byte, len(docs))
	first := 0
	for d, inputs := range docs {
		body, err := chunkedBody(ep.InferenceID, ms, ep.Chunking, results[first:first+len(inputs)])
		if err != nil {
			return nil, err
		}
		bodies[d] = body
		first += len(inputs)
	}
	return bodies, nil
}

// chunkResult is one stored chunk: its offsets and its (merged) embedding,
// dense or sparse by the endpoint's task type.
type chunkResult struct {
	start, end int
	dense      []float32
	sparse     inference.SparseEmbedding
}

// modelSettings are semantic_text's model_settings; dimensions and
// similarity are written for text_embedding only.
type modelSettings struct {
	taskType   config.TaskType
	dimensions int
	similarity string
}

// mergeSlots folds an input's chunk embeddings (embedding(j) is chunk j's)
// into its result slots: a slot's first chunk starts it, each later one is
// merged in with merge(acc, chunks merged so far, next).
func mergeSlots(chunks []chunking.Chunk, embedding func(j int) chunkResult, merge func(acc *chunkResult, n int, next chunkResult)) []chunkResult {
	slots := chunking.SlotChunks(chunks)
	out := make([]chunkResult, len(slots))
	counts := make([]int, len(slots))
	for j, s := range chunking.Slots(len(chunks)) {
		e := embedding(j)
		if counts[s] == 0 {
			out[s] = e
		} else {
			merge(&out[s], counts[s], e)
		}
		counts[s]++
		out[s].start, out[s].end = slots[s].Start, slots[s].End
	}
	return out
}

// chunkedBody writes ChunkedInfer's body by hand: embeddings are large, and
// floats are written as Java does.
func chunkedBody(inferenceID string, ms modelSettings, chunking *config.ChunkingSettings, results [][]chunkResult) ([]byte, error) {
	id, err := xcontent.Marshal(inferenceID)
	if err != nil {
		return nil, err
	}
	b := append([]byte(`{"inference_id":`), id...)
	b = append(b, `,"model_settings":{"service":"`+config.ServiceName+`","task_type":"`...)
	b = append(b, ms.taskType...)
	b = append(b, '"')
	dense := ms.taskType == config.TextEmbedding
	if dense {
		sim, err := xcontent.Marshal(ms.similarity)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"dimensions":`...)
		b = strconv.AppendInt(b, int64(ms.dimensions), 10)
		b = append(append(append(b, `,"similarity":`...), sim...), `,"element_type":"float"`...)
	}
	b = append(b, '}')
	if chunking != nil {
		cs, err := xcontent.Marshal(*chunking)
		if err != nil {
			return nil, err
		}
		b = append(append(b, `,"chunking_settings":`...), cs...)
	}
	b = append(b, `,"chunks":[`...)
	for i, input := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, c := range input {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"start_offset":`...)
			b = strconv.AppendInt(b, int64(c.start), 10)
			b = append(b, `,"end_offset":`...)
			b = strconv.AppendInt(b, int64(c.end), 10)
			b = append(b, `,"embeddings":`...)
			if dense {
				b = append(b, '[')
				for d, x := range c.dense {
					if d > 0 {
						b = append(b, ',')
					}
					b = xcontent.AppendJavaFloat(b, x)
				}
				b = append(b, ']')
			} else {
				b = append(b, '{')
				for t, wt := range c.sparse.Tokens {
					if t > 0 {
						b = append(b, ',')
					}
					key, err := xcontent.Marshal(wt.Token)
					if err != nil {
						return nil, err
					}
					b = append(append(b, key...), ':')
					b = xcontent.AppendJavaFloat(b, wt.Weight)
				}
				b = append(b, '}')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "]}"...), nil
}
