package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/inferapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/tokenizer"
	"github.com/jetinfer/jetinfer/xcontent"
)

// Infer runs a validated POST _inference request on the endpoint's loaded
// model and returns the response body exactly as Elasticsearch writes it:
// {"text_embedding":[{"embedding":[…]}]}, {"sparse_embedding":[{"is_truncated":…,
// "embedding":{token:weight}}]} or {"rerank":[{"index":…,"relevance_score":…,"text":…}]}.
// Like Elasticsearch's inference API it does not chunk (inputs longer than
// the model's limit are truncated) except for an Elastic Rerank endpoint
// whose long_document_strategy is chunk (see rerankChunked). opts come from
// the other APIs' routes (see inferapi.Options); with opts.Tokenize the
// body is an inferapi.TokenizeResponse instead.
func Infer(ctx context.Context, m *inference.Model, ep config.Endpoint, req inferapi.Request, opts inferapi.Options) (inferapi.Result, error) {
	var res inferapi.Result
	ro, err := runOptions(m.Spec(), opts)
	if err != nil {
		return res, err
	}
	if req, err = boundChars(req, opts, m.Spec().MaxSequenceLength*inferapi.CharsPerToken); err != nil {
		return res, err
	}
	switch {
	case opts.Tokenize:
		res.Body, err = tokenize(ctx, m, req.Input, ro.Prompt, opts.SpecialTokens)
		return res, err
	case opts.Describe:
		res.Body, err = json.Marshal(describe(m.Spec(), m.Batch()))
		return res, err
	}
	if opts.Dimensions > 0 && ep.TaskType != config.TextEmbedding {
		return res, eserror.BadRequest("[dimensions] applies to text_embedding endpoints only, not to [%s]", ep.TaskType)
	}
	// A dense model's size is known once loaded (measured when nothing
	// states it): checked before the model runs.
	if d := m.Spec().Dimensions; opts.Dimensions > d {
		return res, eserror.BadRequest(inferapi.ErrDimensionsTooLarge, d, opts.Dimensions)
	}
	switch ep.TaskType {
	case config.TextEmbedding:
		// The tokens come along: only the dense routes report usage.
		vecs, tokens, err := m.EmbedWith(ctx, req.Input, modelInputType(req.InputType), ro)
		if err != nil {
			return res, tooLong(err)
		}
		res.Tokens = tokens
		if opts.Dimensions > 0 {
			normalized := m.Spec().Normalize
			if ro.Normalize != nil {
				normalized = *ro.Normalize
			}
			truncateDimensions(vecs, opts.Dimensions, normalized)
		}
		res.Body = denseResponse(vecs)
	case config.SparseEmbedding:
		embs, err := m.SparseEmbedWith(ctx, req.Input, modelInputType(req.InputType), ro)
		if err != nil {
			return res, tooLong(err)
		}
		res.Body = sparseResponse(embs, opts.SparseIDs)
	case config.Rerank:
		if req.Query == nil {
			return res, fmt.Errorf("rerank request without a query")
		}
		var scores []float32
		if ss := ep.ServiceSettings; ss.LongDocumentStrategy == config.LongDocumentChunk {
			scores, err = rerankChunked(ctx, m, *req.Query, req.Input, ss.MaxChunksPerDoc, ro)
		} else {
			scores, err = m.RerankWith(ctx, *req.Query, req.Input, ro)
		}
		if err != nil {
			return res, tooLong(err)
		}
		res.Body = inferapi.RerankResponse(inferapi.Rank(scores, req.TopN), req.Input, req.IncludeDocuments(ep.TaskSettings))
	default:
		return res, fmt.Errorf("task type %s has no inference", ep.TaskType)
	}
	return res, nil
}

// runOptions turns a request's options into the model's, checking those
// that name something of the model.
func runOptions(spec inference.Spec, opts inferapi.Options) (inference.RunOptions, error) {
	ro := inference.RunOptions{Normalize: opts.Normalize}
	if opts.Prompt != "" {
		// TEI's texts, which name its server option for a request's prompt_name too.
		prompt, ok := spec.Prompts[opts.Prompt]
		if !ok {
			if len(spec.Prompts) == 0 {
				return ro, eserror.BadRequest("`default-prompt-name` is set to `%s` but no prompts were found in the Sentence Transformers configuration", opts.Prompt)
			}
			return ro, eserror.BadRequest("`default-prompt-name` is set to `%s` but it was not found in the Sentence Transformers prompts. Available prompts: %s",
				opts.Prompt, quotedList(slices.Sorted(maps.Keys(spec.Prompts))))
		}
		ro.Prompt = &prompt
	}
	switch opts.Truncation {
	case "":
	case inferapi.TruncateKeepEnd:
		ro.Truncation = inference.TruncateStart
	case inferapi.TruncateRefuse:
		ro.Truncation = inference.RefuseLong
	default:
		return ro, eserror.BadRequest("unknown truncation [%s]", opts.Truncation)
	}
	switch opts.Scores {
	case "":
	case inferapi.ScoresRaw:
		ro.Scores = inference.ScoreLogit
	case inferapi.ScoresSigmoid:
		ro.Scores = inference.ScoreSigmoid
	default:
		return ro, eserror.BadRequest("unknown scores [%s]", opts.Scores)
	}
	return ro, nil
}

// boundChars applies TEI's bound of limit characters to the inputs of a
// request with a Truncation, or Tokenize: one past it is refused when the
// request refuses long inputs or tokenizes, cut to limit bytes otherwise
// (keeping its start, as TEI does, which keeps the tokenizer's work bounded
// where it reads a text to its end; a pair gets half each).
func boundChars(req inferapi.Request, opts inferapi.Options, limit int) (inferapi.Request, error) {
	switch {
	case opts.Tokenize || opts.Truncation == inferapi.TruncateRefuse:
		for _, in := range req.Input {
			if n := utf8.RuneCountInString(in); n > limit {
				return req, eserror.BadRequest("`inputs` must have less than %d characters. Given: %d", limit, n)
			}
		}
	case opts.Truncation == inferapi.TruncateKeepEnd:
		if req.Query != nil {
			limit /= 2
			q := cutBytes(*req.Query, limit)
			req.Query = &q
		}
		inputs := make([]string, len(req.Input))
		for i, in := range req.Input {
			inputs[i] = cutBytes(in, limit)
		}
		req.Input = inputs
	}
	return req, nil
}

// cutBytes keeps at most n bytes of s, ending on a character boundary.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// quotedList writes names as TEI does (Rust's Debug of a list of strings).
func quotedList(names []string) string {
	b, _ := json.Marshal(names)
	return strings.ReplaceAll(string(b), `","`, `", "`)
}

// tooLong words a refused input's error (TEI's text), other errors as
// they are.
func tooLong(err error) error {
	var tl *inference.TooLongError
	if errors.As(err, &tl) {
		return eserror.BadRequest("`inputs` must have less than %d tokens. Given: %d", tl.Max, tl.Tokens)
	}
	return err
}

func describe(spec inference.Spec, batch inference.BatchConfig) inferapi.ModelDescription {
	d := inferapi.ModelDescription{MaxInputLength: spec.MaxSequenceLength, MaxBatchTokens: batch.MaxTokens}
	switch spec.Task {
	case inference.TaskTextEmbedding:
		d.Pooling = string(spec.Pooling)
		if spec.OutputPooled && d.Pooling == "" {
			d.Pooling = "graph" // the graph pools: sentence_embedding outputs
		}
	case inference.TaskSparseEmbedding:
		d.Pooling = "splade"
	}
	return d
}

// tokenize answers an Options.Tokenize request: the tokens of each input
// with the prompt before it, offsets into that prompted text.
func tokenize(ctx context.Context, m *inference.Model, inputs []string, prompt *string, special bool) ([]byte, error) {
	texts := inputs
	if prompt != nil && *prompt != "" {
		texts = make([]string, len(inputs))
		for i, in := range inputs {
			texts[i] = *prompt + in
		}
	}
	toks, err := m.Tokenize(ctx, texts, special)
	switch {
	case errors.Is(err, tokenizer.ErrInternal):
		return nil, eserror.Internal(err, "tokenize failed on an internal error")
	case err != nil:
		return nil, eserror.BadRequest("%s", err.Error())
	}
	out := inferapi.TokenizeResponse{Tokens: make([][]inferapi.Token, len(toks))}
	for i, seq := range toks {
		out.Tokens[i] = make([]inferapi.Token, len(seq))
		for j, t := range seq {
			tok := inferapi.Token{ID: t.ID, Special: t.Special}
			if t.Special {
				tok.Text = m.Token(t.ID)
			} else {
				start, end := t.Start, t.End
				tok.Start, tok.End = &start, &end
				tok.Text = strings.ToValidUTF8(texts[i][start:end], "\uFFFD")
			}
			out.Tokens[i][j] = tok
		}
	}
	return json.Marshal(out)
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

// sparseResponse keys each weight by its token, or by its id (decimal)
// when byID.
func sparseResponse(embs []inference.SparseEmbedding, byID bool) []byte {
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
			if byID {
				b = strconv.AppendInt(append(b, '"'), wt.ID, 10)
				b = append(b, '"', ':')
			} else {
				key, _ := xcontent.Marshal(wt.Token)
				b = append(append(b, key...), ':')
			}
			b = xcontent.AppendJavaFloat(b, wt.Weight)
		}
		b = append(b, "}}"...)
	}
	return append(b, "]}"...)
}
