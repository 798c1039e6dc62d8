package inference

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/jetinfer/jetinfer/inference/tokenizer"
)

// BatchConfig bounds one forward pass.
type BatchConfig struct {
	// MaxTokens bounds a batch's padded size, rows × longest row: what ORT
	// computes and what the output tensor holds. An input longer than it
	// runs alone.
	MaxTokens int
	// MaxRows bounds the inputs per batch; zero means the default.
	MaxRows int
}

// The default batch bound for dense embeddings and rerank on CPU.
const (
	defaultBatchTokens = 4096
	defaultBatchRows   = 64
)

// DefaultBatch returns the batch bound LoadModel uses when LoadOptions.Batch
// is zero: the bound for dense embeddings and rerank on CPU. Sparse models
// multiply every token by the vocabulary in their output, so LoadModel caps
// their token budget further (see sparseOutputBudget).
func DefaultBatch() BatchConfig {
	return BatchConfig{MaxTokens: defaultBatchTokens, MaxRows: defaultBatchRows}
}

// validate checks a batch bound that is not the zero value: MaxTokens at
// least 1, MaxRows at least 1 or zero for the default.
func (c BatchConfig) validate() error {
	if c.MaxTokens < 1 {
		return fmt.Errorf("inference: batch MaxTokens %d must be at least 1", c.MaxTokens)
	}
	if c.MaxRows < 0 {
		return fmt.Errorf("inference: batch MaxRows %d must be at least 1 (or 0 for the default, %d)", c.MaxRows, defaultBatchRows)
	}
	return nil
}

// A batch only takes inputs whose length is within this slack of its
// longest: padding then stays under about 10%, while short inputs of
// slightly different lengths still share a batch.
const (
	padSlackTokens  = 4
	padSlackDivisor = 10
)

// planBatches groups inputs of the given lengths into batches. Inputs are
// sorted by length, longest first; a batch takes the next inputs while its
// padded size, rows × its first (longest) input, stays within MaxTokens
// and they are close enough in length to pad cheaply. Smaller batches cost
// little on CPU, where time is per token, not per run. It returns indices
// into lengths.
func planBatches(lengths []int, cfg BatchConfig) [][]int {
	order := make([]int, len(lengths))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(lengths[b], lengths[a]) })
	var batches [][]int
	for start := 0; start < len(order); {
		longest := max(lengths[order[start]], 1)
		end := start + 1
		for end < len(order) && end-start < cfg.MaxRows && (end-start+1)*longest <= cfg.MaxTokens &&
			longest-lengths[order[end]] <= max(padSlackTokens, longest/padSlackDivisor) {
			end++
		}
		batches = append(batches, order[start:end:end])
		start = end
	}
	return batches
}

// padLayout says which inputs a graph takes besides ids and mask, and on
// which side its batches are padded.
type padLayout struct {
	types, positions, left bool
}

// pad lays encodings out as one padded batch: each row's tokens at its
// start (or, left, at its end), the rest padID with mask 0. Positions count
// a row's real tokens from 0 wherever they sit (transformers' cumsum of the
// mask); padded positions get 0, which the mask hides.
func pad(encs []tokenizer.Encoding, padID int64, layout padLayout) batchInput {
	seq := 0
	for _, e := range encs {
		seq = max(seq, len(e.IDs))
	}
	n := len(encs) * seq
	in := batchInput{rows: len(encs), seq: seq, ids: make([]int64, n), mask: make([]int64, n)}
	if layout.types {
		in.types = make([]int64, n)
	}
	if layout.positions {
		in.positions = make([]int64, n)
	}
	for r, e := range encs {
		row := r * seq
		first := 0 // where the row's tokens start
		if layout.left {
			first = seq - len(e.IDs)
		}
		for i := range seq {
			in.ids[row+i] = padID
		}
		for j, id := range e.IDs {
			at := row + first + j
			in.ids[at], in.mask[at] = id, 1
			if layout.types {
				in.types[at] = e.TypeIDs[j]
			}
			if layout.positions {
				in.positions[at] = int64(j)
			}
		}
	}
	return in
}
