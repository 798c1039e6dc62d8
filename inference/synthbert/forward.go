package synthbert

import (
	"errors"
	"fmt"
	"math"
)

// maskedScore is added to the attention score of every padded key, as
// (1-mask)·maskedScore, before the softmax. It is BERT's original constant;
// exp(-10000) is exactly 0 in float32, so padding has no effect at all on
// real positions. The ONNX graph uses the same value.
const maskedScore = -10000

// Forward runs the model in pure Go on a padded batch: ids, typeIDs and mask
// are [batch][seq] with equal lengths; mask is 1 for real tokens and 0 for
// padding. It stores float32, as ONNX Runtime does, but accumulates sums in
// float64, so it is an independent reference rather than a replica of ONNX
// Runtime's arithmetic.
//
// For HeadHidden and HeadMaskedLM it returns out[b][s][...]; for
// HeadClassifier out[b][0][...], one row per batch item.
func (m *Model) Forward(ids, typeIDs, mask [][]int64) ([][][]float32, error) {
	if m.Config.Decoder {
		return nil, errors.New("synthbert: forward: a decoder reads positions: call ForwardPositions")
	}
	return m.forward(ids, typeIDs, mask, nil)
}

// ForwardPositions is Forward for a Decoder: positions are the position_ids
// input, [batch][seq] like the others (no token types).
func (m *Model) ForwardPositions(ids, mask, positions [][]int64) ([][][]float32, error) {
	if !m.Config.Decoder {
		return nil, errors.New("synthbert: forward: only a decoder reads positions")
	}
	if len(positions) != len(ids) {
		return nil, fmt.Errorf("synthbert: forward: %d rows of positions for %d of ids", len(positions), len(ids))
	}
	for b := range positions {
		if len(positions[b]) != len(ids[b]) {
			return nil, fmt.Errorf("synthbert: forward: row %d: %d positions for %d ids", b, len(positions[b]), len(ids[b]))
		}
		if err := checkRange("position", positions[b], m.Config.MaxPositions); err != nil {
			return nil, fmt.Errorf("synthbert: forward: row %d: %w", b, err)
		}
	}
	return m.forward(ids, mask, mask, positions)
}

func (m *Model) forward(ids, typeIDs, mask, positions [][]int64) ([][][]float32, error) {
	if err := m.checkBatch(ids, typeIDs, mask); err != nil {
		return nil, fmt.Errorf("synthbert: forward: %w", err)
	}
	out := make([][][]float32, len(ids))
	for b := range ids {
		var pos []int64
		if positions != nil {
			pos = positions[b]
		}
		x := m.encode(ids[b], typeIDs[b], mask[b], pos)
		out[b] = m.head(x).rowSlices()
	}
	return out, nil
}

// checkBatch rejects what the ONNX graph would reject or silently misread:
// ragged rows, ids outside the tables, sequences longer than MaxPositions.
func (m *Model) checkBatch(ids, typeIDs, mask [][]int64) error {
	if len(ids) == 0 {
		return errors.New("empty batch")
	}
	if len(typeIDs) != len(ids) || len(mask) != len(ids) {
		return fmt.Errorf("batch sizes differ: %d ids, %d type ids, %d masks", len(ids), len(typeIDs), len(mask))
	}
	seq := len(ids[0])
	if seq == 0 || seq > m.Config.MaxPositions {
		return fmt.Errorf("sequence length %d outside [1, %d]", seq, m.Config.MaxPositions)
	}
	for b := range ids {
		if len(ids[b]) != seq || len(typeIDs[b]) != seq || len(mask[b]) != seq {
			return fmt.Errorf("row %d: lengths %d/%d/%d (ids/type ids/mask), want %d",
				b, len(ids[b]), len(typeIDs[b]), len(mask[b]), seq)
		}
		if err := checkRange("id", ids[b], m.Config.VocabSize); err != nil {
			return fmt.Errorf("row %d: %w", b, err)
		}
		if err := checkRange("type id", typeIDs[b], m.Config.TypeVocabSize); err != nil {
			return fmt.Errorf("row %d: %w", b, err)
		}
		if err := checkRange("mask value", mask[b], 2); err != nil {
			return fmt.Errorf("row %d: %w", b, err)
		}
	}
	return nil
}

func checkRange(what string, vs []int64, limit int) error {
	for s, v := range vs {
		if v < 0 || v >= int64(limit) {
			return fmt.Errorf("%s %d at position %d outside [0, %d)", what, v, s, limit)
		}
	}
	return nil
}

// encode runs the embeddings and every encoder layer on one sequence,
// padding included: padded positions are computed like any other, only no
// real position attends to them.
func (m *Model) encode(ids, typeIDs, mask, positions []int64) matrix {
	keyBias := make([]float64, len(mask))
	for s, v := range mask {
		keyBias[s] = float64(1-v) * maskedScore
	}
	x := m.embed(ids, typeIDs, positions)
	for i := range m.layers {
		x = m.layers[i].forward(x, keyBias, m.Config.Heads, m.Config.LayerNormEps, m.Config.Decoder)
	}
	return x
}

// embed sums word, position (positions, or 0..seq-1 when nil) and
// token-type embeddings, then normalizes.
func (m *Model) embed(ids, typeIDs, positions []int64) matrix {
	e := &m.embeddings
	x := newMatrix(len(ids), e.word.cols)
	for s := range ids {
		typeID := 0
		if !m.Config.NoTokenTypeInput && !m.Config.Decoder {
			typeID = int(typeIDs[s])
		}
		position := s
		if positions != nil {
			position = int(positions[s])
		}
		word, pos, typ := e.word.row(int(ids[s])), e.position.row(position), e.tokenType.row(typeID)
		row := x.row(s)
		for j := range row {
			row[j] = float32(float64(word[j]) + float64(pos[j]) + float64(typ[j]))
		}
	}
	return e.norm.apply(x, m.Config.LayerNormEps)
}

// forward is one post-LayerNorm BERT layer: self-attention and the
// feed-forward block, each with a residual connection.
func (l *encoderLayer) forward(x matrix, keyBias []float64, heads int, eps float32, causal bool) matrix {
	attn := l.attnOut.apply(l.selfAttention(x, keyBias, heads, causal))
	x = l.attnNorm.apply(attn.add(x), eps)
	ff := l.output.apply(l.intermediate.apply(x).gelu())
	return l.outNorm.apply(ff.add(x), eps)
}

// selfAttention is multi-head scaled dot-product attention; keyBias holds
// each key position's additive mask, and causal masks the keys after each
// query as well.
func (l *encoderLayer) selfAttention(x matrix, keyBias []float64, heads int, causal bool) matrix {
	q, k, v := l.query.apply(x), l.key.apply(x), l.value.apply(x)
	seq, dh := x.rows, x.cols/heads
	scale := math.Sqrt(float64(dh))
	ctx := newMatrix(seq, x.cols)
	probs, acc := make([]float64, seq), make([]float64, dh)
	for h := range heads {
		lo, hi := h*dh, (h+1)*dh
		for i := range seq {
			qi := q.row(i)[lo:hi]
			for j := range seq {
				probs[j] = dot(qi, k.row(j)[lo:hi])/scale + keyBias[j]
				if causal && j > i {
					probs[j] += maskedScore
				}
			}
			softmax(probs)
			clear(acc)
			for j, p := range probs {
				for d, vv := range v.row(j)[lo:hi] {
					acc[d] += p * float64(vv)
				}
			}
			out := ctx.row(i)[lo:hi]
			for d, a := range acc {
				out[d] = float32(a)
			}
		}
	}
	return ctx
}

func dot(a, b []float32) float64 {
	var sum float64
	for i := range a {
		sum += float64(a[i]) * float64(b[i])
	}
	return sum
}

// softmax normalizes p in place; subtracting the maximum keeps exp finite.
func softmax(p []float64) {
	maxV := math.Inf(-1)
	for _, v := range p {
		maxV = max(maxV, v)
	}
	var sum float64
	for i, v := range p {
		p[i] = math.Exp(v - maxV)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
}

// head applies the task layer; its rows become the output of one batch item.
func (m *Model) head(x matrix) matrix {
	switch m.Config.Head {
	case HeadMaskedLM:
		h := m.mlm
		t := h.norm.apply(h.transform.apply(x).gelu(), m.Config.LayerNormEps)
		return h.decoder.apply(t)
	case HeadClassifier:
		h := m.classifier
		first := matrix{rows: 1, cols: x.cols, data: x.row(0)}
		return h.classifier.apply(h.pooler.apply(first).tanh())
	}
	return x
}

// matrix is a row-major float32 matrix.
type matrix struct {
	rows, cols int
	data       []float32
}

func newMatrix(rows, cols int) matrix {
	return matrix{rows: rows, cols: cols, data: make([]float32, rows*cols)}
}

func (x matrix) row(i int) []float32 { return x.data[i*x.cols : (i+1)*x.cols] }

func (x matrix) rowSlices() [][]float32 {
	out := make([][]float32, x.rows)
	for i := range out {
		out[i] = x.row(i)
	}
	return out
}

// add adds y to x in place and returns x.
func (x matrix) add(y matrix) matrix {
	for i := range x.data {
		x.data[i] += y.data[i]
	}
	return x
}

// gelu applies the exact (erf) GELU in place and returns x.
func (x matrix) gelu() matrix {
	for i, v := range x.data {
		f := float64(v)
		x.data[i] = float32(0.5 * f * (1 + math.Erf(f/math.Sqrt2)))
	}
	return x
}

// tanh applies tanh in place and returns x.
func (x matrix) tanh() matrix {
	for i, v := range x.data {
		x.data[i] = float32(math.Tanh(float64(v)))
	}
	return x
}

func (t *table) row(i int) []float32 { return t.w[i*t.cols : (i+1)*t.cols] }

// apply returns x·W + b.
func (l *linear) apply(x matrix) matrix {
	y := newMatrix(x.rows, l.out)
	acc := make([]float64, l.out)
	for i := range x.rows {
		for j := range acc {
			acc[j] = float64(l.b[j])
		}
		// Walking W row by row keeps the inner loop on contiguous memory.
		for k, xv := range x.row(i) {
			xk := float64(xv)
			for j, w := range l.w[k*l.out : (k+1)*l.out] {
				acc[j] += xk * float64(w)
			}
		}
		out := y.row(i)
		for j, v := range acc {
			out[j] = float32(v)
		}
	}
	return y
}

// apply normalizes every row of x over its columns (population variance,
// as ONNX LayerNormalization), then scales by gamma and shifts by beta.
func (n *layerNorm) apply(x matrix, eps float32) matrix {
	y := newMatrix(x.rows, x.cols)
	for i := range x.rows {
		in, out := x.row(i), y.row(i)
		var mean float64
		for _, v := range in {
			mean += float64(v)
		}
		mean /= float64(len(in))
		var variance float64
		for _, v := range in {
			d := float64(v) - mean
			variance += d * d
		}
		variance /= float64(len(in))
		inv := 1 / math.Sqrt(variance+float64(eps))
		for j, v := range in {
			out[j] = float32((float64(v)-mean)*inv*float64(n.gamma[j]) + float64(n.beta[j]))
		}
	}
	return y
}
