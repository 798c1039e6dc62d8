package pipeline

//lint:file-ignore ST1005 its errors are Elasticsearch's texts, word for word

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/pipeline/chunking"
	"github.com/jetinfer/jetinfer/xcontent"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
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
// A document served by Runner.Ingest one of whose inputs panicked has an
// empty chunk array for it and, after "chunks",
// "input_errors":[{"input":<index>,"error":{…},"status":<status>},…].
func ChunkedInfer(ctx context.Context, m *inference.Model, ep config.Endpoint, inputs []string, inputType inferapi.InputType) ([]byte, error) {
	bodies, err := ChunkedInferDocs(ctx, m, ep, [][]string{inputs}, inputType, 0)
	if err != nil {
		return nil, err
	}
	return bodies[0], nil
}

// ChunkedInferDocs is ChunkedInfer for several documents at once (each
// given by its inputs): their chunks go to the engine together, so short
// documents share batches. It returns one body per document.
//
// With maxResultBytes > 0 a document's body is bounded: one whose stored
// chunks could not fit, however small their embeddings' numbers, fails the
// call with 413 before anything is embedded (a few bytes of empty inputs
// would otherwise build a result of hundreds of megabytes first), and a
// body that outgrows the bound while it is written fails at that point.
// The documents are embedded a few at a time, at most maxChunksPerCall
// chunks per engine call (a single larger document alone), so that the
// embeddings held at once stay bounded too.
func ChunkedInferDocs(ctx context.Context, m *inference.Model, ep config.Endpoint, docs [][]string, inputType inferapi.InputType, maxResultBytes int64) ([][]byte, error) {
	return chunkedInferDocs(ctx, m, ep, docs, inputType, maxResultBytes, chunking.Split)
}

// splitFunc chunks an input: chunking.Split, or a test's stand-in.
type splitFunc func(input string, settings config.ChunkingSettings) ([]chunking.Chunk, error)

func chunkedInferDocs(ctx context.Context, m *inference.Model, ep config.Endpoint, docs [][]string, inputType inferapi.InputType, maxResultBytes int64, split splitFunc) ([][]byte, error) {
	// Traced under the caller's span, if it has one.
	c, err := chunk(ctx, m, ep, docs, maxResultBytes, split)
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, 0, len(docs))
	for start := 0; start < len(docs); {
		end, n := start+1, c.counts[start]
		for end < len(docs) && n+c.counts[end] <= maxChunksPerCall {
			n += c.counts[end]
			end++
		}
		results, err := embedDocs(ctx, m, ep.TaskType, docs[start:end], c.chunked[start:end], inputType)
		if err != nil {
			return nil, err
		}
		for _, r := range results {
			body, err := c.writer.write(r, nil)
			if err != nil {
				return nil, err
			}
			bodies = append(bodies, body)
		}
		start = end
	}
	return bodies, nil
}

// chunk is newChunkedRun, traced under the caller's span if it has one
// (ended even when chunking a hostile input panics).
func chunk(ctx context.Context, m *inference.Model, ep config.Endpoint, docs [][]string, maxResultBytes int64, split splitFunc) (*chunkedRun, error) {
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/jetinfer/jetinfer/pipeline").Start(ctx, "chunk",
		trace.WithAttributes(attribute.Int("documents", len(docs))))
	defer span.End()
	return newChunkedRun(m, ep, docs, maxResultBytes, split)
}

// chunkedRun is ChunkedInferDocs's documents chunked, and measured against
// the result bound, before any is embedded.
type chunkedRun struct {
	// chunked[d][i] are document d's input i's chunks; counts[d] their
	// number.
	chunked [][][]chunking.Chunk
	counts  []int
	writer  bodyWriter
}

func newChunkedRun(m *inference.Model, ep config.Endpoint, docs [][]string, maxResultBytes int64, split splitFunc) (*chunkedRun, error) {
	settings := config.LegacyChunking()
	if ep.Chunking != nil {
		settings = ep.Chunking
	}
	w, err := newBodyWriter(m, ep, maxResultBytes)
	if err != nil {
		return nil, err
	}
	ms := w.ms
	c := &chunkedRun{
		chunked: make([][][]chunking.Chunk, len(docs)),
		counts:  make([]int, len(docs)),
		writer:  w,
	}
	for d, inputs := range docs {
		stored := 0
		for _, in := range inputs {
			cs, err := split(in, *settings)
			if err != nil {
				return nil, err
			}
			c.chunked[d] = append(c.chunked[d], cs)
			c.counts[d] += len(cs)
			stored += min(len(cs), chunking.MaxChunksPerInput)
		}
		if least := minResultBytes(stored, ms.dimensions); maxResultBytes > 0 && least > maxResultBytes {
			return nil, eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong,
				"the result of [%d] inputs and [%d] chunks would take at least [%d] bytes, more than the largest message the NATS server accepts [%d bytes]",
				len(inputs), stored, least, maxResultBytes)
		}
	}
	return c, nil
}

// maxChunksPerCall bounds the chunks of one engine call of ChunkedInferDocs:
// enough for the engine to batch them well by length.
const maxChunksPerCall = 1024

// embedDocs embeds the chunks of docs (chunked[d][i] are document d's input
// i's) in one engine call and returns each document's stored chunks, by
// input.
func embedDocs(ctx context.Context, m *inference.Model, task config.TaskType, docs [][]string, chunked [][][]chunking.Chunk, inputType inferapi.InputType) ([][][]chunkResult, error) {
	var texts []string
	for d, inputs := range docs {
		for i, in := range inputs {
			for _, c := range chunked[d][i] {
				texts = append(texts, c.Text(in))
			}
		}
	}
	var embedding func(k int) chunkResult
	var merge func(acc *chunkResult, n int, next chunkResult)
	switch task {
	case config.TextEmbedding:
		vecs, err := m.Embed(ctx, texts, modelInputType(inputType))
		if err != nil {
			return nil, err
		}
		if len(vecs) != len(texts) {
			return nil, fmt.Errorf("Error the number of embedding responses [%d] does not equal the number of requests [%d]", len(vecs), len(texts))
		}
		embedding = func(k int) chunkResult { return chunkResult{dense: vecs[k]} }
		merge = func(acc *chunkResult, n int, next chunkResult) { acc.dense = MergeDense(acc.dense, n, next.dense, 1) }
	default:
		embs, err := m.SparseEmbed(ctx, texts, modelInputType(inputType))
		if err != nil {
			return nil, err
		}
		if len(embs) != len(texts) {
			return nil, fmt.Errorf("Error the number of embedding responses [%d] does not equal the number of requests [%d]", len(embs), len(texts))
		}
		embedding = func(k int) chunkResult { return chunkResult{sparse: embs[k]} }
		merge = func(acc *chunkResult, _ int, next chunkResult) {
			acc.sparse = MergeSparseEmbedding(acc.sparse, next.sparse)
		}
	}
	out := make([][][]chunkResult, len(docs))
	k := 0
	for d := range docs {
		out[d] = make([][]chunkResult, len(chunked[d]))
		for i, cs := range chunked[d] {
			first := k
			out[d][i] = mergeSlots(cs, func(j int) chunkResult { return embedding(first + j) }, merge)
			k += len(cs)
		}
	}
	return out, nil
}

// minResultBytes is the least a result body of chunks stored chunks takes:
// each chunk's object with one-digit offsets, and a dense embedding's dims
// numbers of at least one digit, with their commas.
func minResultBytes(chunks, dims int) int64 {
	perChunk := len(`{"start_offset":0,"end_offset":0,"embeddings":[]},`) + 2*dims
	return int64(chunks) * int64(perChunk)
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

// bodyWriter writes ChunkedInfer's bodies by hand: embeddings are large,
// and floats are written as Java does.
type bodyWriter struct {
	inferenceID string
	ms          modelSettings
	chunking    *config.ChunkingSettings
	// maxBytes bounds a body (0: no bound): writing stops with 413 as soon
	// as it is passed.
	maxBytes int64
}

// newBodyWriter writes the bodies of ep's documents on m.
func newBodyWriter(m *inference.Model, ep config.Endpoint, maxResultBytes int64) (bodyWriter, error) {
	if ep.TaskType != config.TextEmbedding && ep.TaskType != config.SparseEmbedding {
		return bodyWriter{}, fmt.Errorf("task type %s is not chunked", ep.TaskType)
	}
	ms := modelSettings{taskType: ep.TaskType}
	if ep.TaskType == config.TextEmbedding {
		ms.dimensions = m.Spec().Dimensions
		ms.similarity = m.Spec().Similarity
		if s := ep.ServiceSettings.Similarity; s != "" {
			ms.similarity = s
		}
	}
	return bodyWriter{inferenceID: ep.InferenceID, ms: ms, chunking: ep.Chunking, maxBytes: maxResultBytes}, nil
}

func (w bodyWriter) tooLarge(b []byte) error {
	return eserror.New(http.StatusRequestEntityTooLarge, eserror.TypeContentTooLong,
		"the result of more than [%d] bytes is larger than the largest message the NATS server accepts [%d bytes]", len(b), w.maxBytes)
}

// write writes a document's body from its inputs' stored chunks; errs (nil,
// or one per input) gives an input that failed its own error, in
// "input_errors", with no chunks.
func (w bodyWriter) write(results [][]chunkResult, errs []error) ([]byte, error) {
	inferenceID, ms, chunking := w.inferenceID, w.ms, w.chunking
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
			if w.maxBytes > 0 && int64(len(b)) > w.maxBytes {
				return nil, w.tooLarge(b)
			}
		}
		b = append(b, ']')
	}
	b = append(b, ']')
	first := true
	for i, err := range errs {
		if err == nil {
			continue
		}
		if first {
			b = append(b, `,"input_errors":[`...)
			first = false
		} else {
			b = append(b, ',')
		}
		env, merr := eserror.As(err).MarshalJSON()
		if merr != nil {
			return nil, merr
		}
		b = append(b, `{"input":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(append(b, ','), env[1:]...) // the envelope's members
	}
	if !first {
		b = append(b, ']')
	}
	return append(b, '}'), nil
}
