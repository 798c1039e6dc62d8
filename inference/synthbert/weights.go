package synthbert

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// linear is a dense layer y = x·W + b. W is row-major [in][out], the layout
// ONNX MatMul takes directly (Hugging Face stores the transpose, [out][in]).
type linear struct {
	name    string // weight-name prefix: name+".weight", name+".bias"
	in, out int
	w, b    []float32
}

// layerNorm normalizes over the hidden dimension, then scales and shifts.
type layerNorm struct {
	name        string
	gamma, beta []float32
}

// table is an embedding table, row-major [rows][hidden].
type table struct {
	name       string
	rows, cols int
	w          []float32
}

type embeddings struct {
	word, position, tokenType table
	norm                      layerNorm
}

type encoderLayer struct {
	name                       string // "bert.encoder.layer.N"
	query, key, value, attnOut linear
	attnNorm                   layerNorm
	intermediate, output       linear
	outNorm                    layerNorm
}

type mlmHead struct {
	transform linear
	norm      layerNorm
	decoder   linear
}

type classifierHead struct {
	pooler, classifier linear
}

// The weight names are those of Hugging Face's BertModel,
// BertForMaskedLM and BertForSequenceClassification, so a synthetic ONNX
// file reads like an exported real one.
func newModel(cfg Config) *Model {
	d := drawer{seed: cfg.Seed, scale: float64(cfg.WeightScale)}
	h := cfg.Hidden
	m := &Model{
		Config: cfg,
		embeddings: embeddings{
			word:      d.table("bert.embeddings.word_embeddings", cfg.VocabSize, h),
			position:  d.table("bert.embeddings.position_embeddings", cfg.MaxPositions, h),
			tokenType: d.table("bert.embeddings.token_type_embeddings", cfg.TypeVocabSize, h),
			norm:      d.layerNorm("bert.embeddings.LayerNorm", h),
		},
		layers: make([]encoderLayer, cfg.Layers),
	}
	for i := range m.layers {
		m.layers[i] = d.encoderLayer(fmt.Sprintf("bert.encoder.layer.%d", i), h, cfg.Intermediate)
	}
	switch cfg.Head {
	case HeadMaskedLM:
		m.mlm = &mlmHead{
			transform: d.linear("cls.predictions.transform.dense", h, h),
			norm:      d.layerNorm("cls.predictions.transform.LayerNorm", h),
			// Hugging Face ties the decoder to the word embeddings and keeps
			// its bias apart; an untied decoder is the same computation.
			decoder: d.linear("cls.predictions.decoder", h, cfg.VocabSize),
		}
	case HeadClassifier:
		m.classifier = &classifierHead{
			pooler:     d.linear("bert.pooler.dense", h, h),
			classifier: d.linear("classifier", h, cfg.NumLabels),
		}
	}
	return m
}

func (d drawer) encoderLayer(prefix string, hidden, intermediate int) encoderLayer {
	return encoderLayer{
		name:         prefix,
		query:        d.linear(prefix+".attention.self.query", hidden, hidden),
		key:          d.linear(prefix+".attention.self.key", hidden, hidden),
		value:        d.linear(prefix+".attention.self.value", hidden, hidden),
		attnOut:      d.linear(prefix+".attention.output.dense", hidden, hidden),
		attnNorm:     d.layerNorm(prefix+".attention.output.LayerNorm", hidden),
		intermediate: d.linear(prefix+".intermediate.dense", hidden, intermediate),
		output:       d.linear(prefix+".output.dense", intermediate, hidden),
		outNorm:      d.layerNorm(prefix+".output.LayerNorm", hidden),
	}
}

// drawer draws weights. Every tensor gets its own random stream, seeded by
// the model seed and the tensor's name, so its values depend neither on the
// order of drawing nor on the other tensors' sizes: two models that differ
// only in Head share their encoder weights.
type drawer struct {
	seed  uint64
	scale float64
}

func (d drawer) table(name string, rows, cols int) table {
	return table{name: name, rows: rows, cols: cols, w: d.normal(name+".weight", rows*cols, 0)}
}

func (d drawer) linear(name string, in, out int) linear {
	return linear{
		name: name, in: in, out: out,
		w: d.normal(name+".weight", in*out, 0),
		b: d.normal(name+".bias", out, 0),
	}
}

// layerNorm draws gamma around 1 and beta around 0 rather than BERT's exact
// 1 and 0, so that a mix-up of the two, or a missing affine step, shows.
func (d drawer) layerNorm(name string, n int) layerNorm {
	return layerNorm{
		name:  name,
		gamma: d.normal(name+".weight", n, 1),
		beta:  d.normal(name+".bias", n, 0),
	}
}

// normal returns n values of mean `mean` and std-dev d.scale from the
// stream named name.
//
// The values are approximately normal: each is the sum of four uniform
// 16-bit integers cut from one PCG output (Irwin–Hall, a bell curve bounded
// at ±2√3 σ). rand.NormFloat64 would go through math.Exp and math.Log, whose
// results differ in the last bit between architectures (amd64 has assembly
// versions); integer arithmetic plus a single rounded multiplication gives
// the same float32 everywhere. No step is a multiply-add, so no compiler can
// fuse one into an FMA and change the rounding.
func (d drawer) normal(name string, n int, mean float32) []float32 {
	h := fnv.New64a()
	h.Write([]byte(name)) // hash.Hash.Write never fails
	rng := rand.NewPCG(d.seed, h.Sum64())
	// Each 16-bit part has mean 32767.5 and variance 65536²/12 (closely
	// enough), so 2·sum−4·65535 has mean 0 and std-dev 2·65536/√3.
	k := d.scale * math.Sqrt(3) / (2 * 65536)
	out := make([]float32, n)
	for i := range out {
		r := rng.Uint64()
		sum := int64(r&0xffff) + int64(r>>16&0xffff) + int64(r>>32&0xffff) + int64(r>>48)
		out[i] = float32(float64(2*sum-4*0xffff)*k) + mean
	}
	return out
}
