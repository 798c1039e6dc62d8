// Package synthbert owns synthetic BERT models: deterministic weights drawn
// from a seed, their ONNX serialization, and a pure-Go reference forward pass
// of the same model. No pretrained weights can be downloaded where jetinfer is
// built and tested, so tests and benchmarks run these instead: ONNX Runtime
// executes the ONNX graph and Forward checks what it computes.
package synthbert

import (
	"errors"
	"fmt"
	"math"
)

// Head is the task layer on top of the encoder; it decides the graph output.
type Head int

// Heads, one per kind of model jetinfer serves.
const (
	// HeadHidden outputs "last_hidden_state" [batch, seq, hidden]: the
	// encoder itself, as sentence-embedding models (E5) are exported.
	HeadHidden Head = iota
	// HeadMaskedLM outputs "logits" [batch, seq, vocab] through BERT's MLM
	// head (dense H→H, GELU, LayerNorm, decoder H→V with bias), as SPLADE
	// and ELSER are.
	HeadMaskedLM
	// HeadClassifier outputs "logits" [batch, num_labels] through BERT's
	// pooler (dense H→H and tanh on position 0) and a linear classifier, as
	// cross-encoder rerankers are.
	HeadClassifier
)

// String names the head as the tests and errors do.
func (h Head) String() string {
	switch h {
	case HeadHidden:
		return "hidden"
	case HeadMaskedLM:
		return "masked-lm"
	case HeadClassifier:
		return "classifier"
	}
	return fmt.Sprintf("Head(%d)", int(h))
}

// OutputName is the name of the graph's only output for this head.
func (h Head) OutputName() string {
	if h == HeadHidden {
		return "last_hidden_state"
	}
	return "logits"
}

// Config describes a synthetic BERT model. Equal configs give identical
// weights and byte-identical ONNX on every platform.
type Config struct {
	VocabSize     int // rows of the word embedding table, columns of MLM logits
	Hidden        int
	Layers        int
	Heads         int // attention heads; must divide Hidden
	Intermediate  int // width of the feed-forward block
	MaxPositions  int // longest sequence: rows of the position table
	TypeVocabSize int // token types (segments); BERT has 2
	NumLabels     int // classifier outputs; used by HeadClassifier only
	Head          Head
	Seed          uint64
	// WeightScale is the std-dev of the normal init (BERT uses 0.02; tests
	// want larger, e.g. 0.2, so outputs differ visibly between inputs).
	WeightScale float32
	// LayerNormEps is added to the variance in every LayerNorm; BERT uses 1e-12.
	LayerNormEps float32
	// NoTokenTypeInput leaves token_type_ids out of the graph, as
	// XLM-RoBERTa exports do: every token then has type 0, and Forward
	// ignores the type ids it is given.
	NoTokenTypeInput bool
	// Decoder makes the model a decoder as embedding models such as
	// Qwen3-Embedding export it: causal attention (a position attends to
	// itself and the positions before it), no token types, and positions
	// read from a position_ids input, which a left-padded batch needs
	// (ForwardPositions). Its head must be HeadHidden.
	Decoder bool
	// SpelledLayerNorm writes each layer normalization as the primitive
	// operators PyTorch exports below opset 17 (ReduceMean, Sub, Pow,
	// ReduceMean, Add, Sqrt, Div, Mul, Add), in a graph of opset 14; the
	// model computes the same.
	SpelledLayerNorm bool
	// Traced writes the layout torch.onnx's tracer gives transformers' eager
	// BERT: each Reshape's shape computed at run time from its input's
	// Shape (Gather, Unsqueeze, Concat with the heads and head size, or the
	// hidden size), and the attention mask unsqueezed one axis at a time
	// before its Cast, as mask[:, None, None, :].to(dtype) traces, with
	// float32's lowest value for masked keys; the model computes the same.
	Traced bool
}

// maxDim bounds every size in a Config, so that products of two sizes cannot
// overflow and a typo fails validation instead of allocating terabytes.
const maxDim = 1 << 24

// maxParams keeps the serialized model under protobuf's 2 GiB message limit,
// with room for the graph around the weights.
const maxParams = (math.MaxInt32 - 64<<20) / 4

// MiniLML12 is the size of MiniLM-L12 and e5-small: 12 layers, hidden 384.
func MiniLML12(head Head, seed uint64) Config {
	return preset(head, seed, 12, 384, 12, 1536)
}

// BERTBase is the size of bert-base-uncased: 12 layers, hidden 768.
func BERTBase(head Head, seed uint64) Config {
	return preset(head, seed, 12, 768, 12, 3072)
}

func preset(head Head, seed uint64, layers, hidden, heads, intermediate int) Config {
	return Config{
		VocabSize:     30522,
		Hidden:        hidden,
		Layers:        layers,
		Heads:         heads,
		Intermediate:  intermediate,
		MaxPositions:  512,
		TypeVocabSize: 2,
		NumLabels:     1, // a reranker's single relevance score
		Head:          head,
		Seed:          seed,
		WeightScale:   0.02,
		LayerNormEps:  1e-12,
	}
}

// validate reports every problem with c at once.
func (c Config) validate() error {
	var errs []error
	sizes := []namedSize{
		{"VocabSize", c.VocabSize},
		{"Hidden", c.Hidden},
		{"Layers", c.Layers},
		{"Heads", c.Heads},
		{"Intermediate", c.Intermediate},
		{"MaxPositions", c.MaxPositions},
		{"TypeVocabSize", c.TypeVocabSize},
	}
	if c.Head == HeadClassifier {
		sizes = append(sizes, namedSize{"NumLabels", c.NumLabels})
	}
	for _, s := range sizes {
		if s.v < 1 || s.v > maxDim {
			errs = append(errs, fmt.Errorf("%s must be in [1, %d], got %d", s.name, maxDim, s.v))
		}
	}
	if c.Heads > 0 && c.Hidden%c.Heads != 0 {
		errs = append(errs, fmt.Errorf("the Hidden size (%d) must be a multiple of Heads (%d)", c.Hidden, c.Heads))
	}
	if c.Head < HeadHidden || c.Head > HeadClassifier {
		errs = append(errs, fmt.Errorf("unknown Head %d", int(c.Head)))
	}
	if c.Decoder && c.Head != HeadHidden {
		errs = append(errs, fmt.Errorf("a Decoder has the hidden head, not %s", c.Head))
	}
	if !positiveFinite(c.WeightScale) {
		errs = append(errs, fmt.Errorf("WeightScale must be positive and finite, got %v", c.WeightScale))
	}
	if !positiveFinite(c.LayerNormEps) {
		errs = append(errs, fmt.Errorf("LayerNormEps must be positive and finite, got %v", c.LayerNormEps))
	}
	if len(errs) == 0 {
		if n := c.paramCount(); n > maxParams {
			errs = append(errs, fmt.Errorf("%d parameters do not fit in one ONNX file (at most %d)", n, maxParams))
		}
	}
	return errors.Join(errs...)
}

type namedSize struct {
	name string
	v    int
}

func positiveFinite(f float32) bool {
	return f > 0 && !math.IsInf(float64(f), 0)
}

// paramCount is the number of float32 weights New draws for c; it needs
// valid sizes so that it cannot overflow.
func (c Config) paramCount() int {
	h, i := c.Hidden, c.Intermediate
	n := (c.VocabSize+c.MaxPositions+c.TypeVocabSize)*h + 2*h
	perLayer := 4*(h*h+h) + (h*i + i) + (i*h + h) + 4*h
	n += c.Layers * perLayer
	switch c.Head {
	case HeadMaskedLM:
		n += h*h + h + 2*h + h*c.VocabSize + c.VocabSize
	case HeadClassifier:
		n += h*h + h + h*c.NumLabels + c.NumLabels
	}
	return n
}

// Model is a synthetic BERT: its config and the weights drawn from it.
type Model struct {
	Config Config

	embeddings embeddings
	layers     []encoderLayer
	mlm        *mlmHead        // set for HeadMaskedLM only
	classifier *classifierHead // set for HeadClassifier only
}

// New validates cfg and draws the model's weights from cfg.Seed.
func New(cfg Config) (*Model, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("synthbert: invalid config: %w", err)
	}
	return newModel(cfg), nil
}
