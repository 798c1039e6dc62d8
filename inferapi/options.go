package inferapi

import (
	"encoding/json"
	"fmt"
)

// Options are what the other APIs' routes (OpenAI, TEI, Cohere and the
// like) ask of an inference beyond a POST _inference body; the NATS
// protocol carries them in a header, so that a request body stays exactly
// Elasticsearch's. The zero value asks for nothing: an inference exactly
// as POST _inference runs it.
type Options struct {
	// Dimensions, when positive, keeps the first Dimensions values of each
	// dense embedding (Matryoshka truncation), normalized again when the
	// embeddings are normalized: the same as truncating before the
	// normalization.
	Dimensions int `json:"dimensions,omitempty"`
	// CountTokens asks for the tokens a dense model read (special tokens
	// and prefixes included, after truncation), which OpenAI's usage
	// reports.
	CountTokens bool `json:"count_tokens,omitempty"`
	// Normalize, when set, says whether dense embeddings are scaled to
	// unit length, whatever the model does by default (TEI's normalize).
	Normalize *bool `json:"normalize,omitempty"`
	// Scores, when set, is how rerank scores are given instead of the
	// model's default: ScoresRaw or ScoresSigmoid (TEI's raw_scores).
	Scores string `json:"scores,omitempty"`
	// Truncation, when set, replaces cutting an input longer than the
	// model's limit at its end: TruncateKeepEnd cuts its start off,
	// TruncateRefuse refuses it (TEI's truncation_direction and truncate,
	// with TEI's bound on the characters of an input, CharsPerToken).
	Truncation string `json:"truncation,omitempty"`
	// Prompt names one of the model's prompts (sentence-transformers'
	// prompts) to put before every input, in place of the one the input
	// type selects (TEI's prompt_name).
	Prompt string `json:"prompt,omitempty"`
	// SparseIDs keys sparse embeddings by vocabulary id (the decimal
	// string) instead of by token (TEI's embed_sparse).
	SparseIDs bool `json:"sparse_ids,omitempty"`
	// Tokenize asks for the tokens of each input instead of an inference:
	// the body answered is a TokenizeResponse.
	Tokenize bool `json:"tokenize,omitempty"`
	// SpecialTokens, with Tokenize, adds the special tokens the model's
	// template puts around an input.
	SpecialTokens bool `json:"special_tokens,omitempty"`
	// Describe asks for the loaded model's description instead of an
	// inference: the body answered is a ModelDescription (TEI's info).
	Describe bool `json:"describe,omitempty"`
}

// ErrDimensionsTooLarge is the reason of the 400 answering Options.Dimensions
// larger than the model's embedding size (its size, then the request's);
// IsDimensionsTooLarge recognizes it, for the APIs that word it their own way.
const ErrDimensionsTooLarge = "[dimensions] must be at most [%d], the model's embedding size, but was [%d]"

// IsDimensionsTooLarge reports whether reason is ErrDimensionsTooLarge's.
func IsDimensionsTooLarge(reason string) bool {
	var size, asked int
	n, err := fmt.Sscanf(reason, ErrDimensionsTooLarge, &size, &asked)
	return err == nil && n == 2
}

// The values of Options.Scores.
const (
	ScoresRaw     = "raw"
	ScoresSigmoid = "sigmoid"
)

// The values of Options.Truncation.
const (
	TruncateKeepEnd = "keep_end"
	TruncateRefuse  = "refuse"
)

// CharsPerToken bounds the characters of an input that asks for a
// Truncation, or Tokenize: MaxInputLength × CharsPerToken (TEI's rule, which
// keeps tokenizing a huge input from costing more than its tokens can use).
const CharsPerToken = 250

// Result is an inference's answer: the POST _inference response body and,
// for a dense model, the tokens read (sent on when Options.CountTokens
// asks).
type Result struct {
	Body   []byte
	Tokens int
}

// TokenizeResponse is the body of an Options.Tokenize request: the tokens
// of each input, in order.
type TokenizeResponse struct {
	Tokens [][]Token `json:"tokens"`
}

// Token is one token of a tokenized input. Start and End are the byte
// offsets, in the input with its prompt, of the text the token stands for,
// and Text is that text; a special token stands for none: its Text is the
// token itself, and it has no offsets.
type Token struct {
	ID      int64  `json:"id"`
	Text    string `json:"text"`
	Special bool   `json:"special,omitempty"`
	Start   *int   `json:"start,omitempty"`
	End     *int   `json:"end,omitempty"`
}

// ModelDescription is the body of an Options.Describe request: what the
// loaded model is.
type ModelDescription struct {
	// Pooling is how a dense model pools (mean, cls), splade for a sparse
	// one, empty for a cross-encoder.
	Pooling string `json:"pooling,omitempty"`
	// MaxInputLength is the most tokens an input keeps, special tokens
	// included.
	MaxInputLength int `json:"max_input_length"`
	// MaxBatchTokens bounds the padded tokens of one forward pass.
	MaxBatchTokens int `json:"max_batch_tokens"`
}

// DenseVectors reads the embeddings of a text_embedding response,
// {"text_embedding":[{"embedding":[…]}, …]}.
func DenseVectors(body []byte) ([][]float32, error) {
	var resp struct {
		TextEmbedding []struct {
			Embedding []float32 `json:"embedding"`
		} `json:"text_embedding"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("read text_embedding response: %w", err)
	}
	out := make([][]float32, len(resp.TextEmbedding))
	for i, e := range resp.TextEmbedding {
		out[i] = e.Embedding
	}
	return out, nil
}
