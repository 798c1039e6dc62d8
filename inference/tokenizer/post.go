package tokenizer

//lint:file-ignore ST1005 errors start with the post-processor type tokenizer.json names ("Sequence")

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Post-processing adds the special tokens ([CLS] … [SEP], <s> … </s>) and the token type ids, after truncation
// has left room for them. Every supported post_processor type is turned into a template, which is what tokenizers'
// TemplateProcessing is; BertProcessing and RobertaProcessing become the templates their Rust code amounts to.

// templatePart is one element of a template: special token ids, or the tokens of sequence A (seq 0) or B (seq 1).
type templatePart struct {
	special []int64
	seq     int
	typeID  int64
}

type postProcessor struct {
	single, pair []templatePart
	hasPair      bool
	trim         *trimOffsets // nil: offsets are not trimmed
}

// added is the number of special tokens the template adds (tokenizers' PostProcessor::added_tokens).
func (p *postProcessor) added(pair bool) int {
	parts := p.single
	if pair {
		parts = p.pair
	}
	n := 0
	for _, part := range parts {
		n += len(part.special)
	}
	return n
}

// apply builds the final ids and type ids from the (truncated) sequences.
func (p *postProcessor) apply(a, b []int64, pair bool) (ids, typeIDs []int64) {
	parts := p.single
	if pair {
		parts = p.pair
	}
	n := p.added(pair) + len(a) + len(b)
	ids, typeIDs = make([]int64, 0, n), make([]int64, 0, n)
	for _, part := range parts {
		seq := part.special
		if seq == nil {
			seq = a
			if part.seq == 1 {
				seq = b
			}
		}
		ids = append(ids, seq...)
		for range seq {
			typeIDs = append(typeIDs, part.typeID)
		}
	}
	return ids, typeIDs
}

func seqPart(seq int, typeID int64) templatePart { return templatePart{seq: seq, typeID: typeID} }

func specialPart(id, typeID int64) templatePart {
	return templatePart{special: []int64{id}, typeID: typeID}
}

// plainPostProcessor leaves the sequences as they are, B with type id 1: tokenizers' default_process (no
// post-processor), which keeps the type ids encode gave each sequence.
func plainPostProcessor() *postProcessor {
	return &postProcessor{
		single:  []templatePart{seqPart(0, 0)},
		pair:    []templatePart{seqPart(0, 0), seqPart(1, 1)},
		hasPair: true,
	}
}

// buildPostProcessor reads post_processor; validID checks that an id exists in the vocabulary.
func buildPostProcessor(raw json.RawMessage, validID func(int64) bool) (*postProcessor, error) {
	if isJSONNull(raw) {
		return plainPostProcessor(), nil
	}
	var cfg hfPostProcessor
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	switch cfg.Type {
	case "ByteLevel":
		// It only trims offsets; ids and type ids are those of no post-processor (PostProcessor::process sets type
		// id i on sequence i before process_encodings).
		p := plainPostProcessor()
		p.trim = cfg.trimOffsets()
		return p, nil
	case "Sequence":
		return buildPostProcessorSequence(cfg, validID)
	case "TemplateProcessing":
		return buildTemplate(cfg, validID)
	case "BertProcessing", "RobertaProcessing":
		if cfg.Cls == nil || cfg.Sep == nil {
			return nil, fmt.Errorf(`%s: "cls" and "sep" are required`, cfg.Type)
		}
		cls, sep := cfg.Cls.ID, cfg.Sep.ID
		if !validID(cls) || !validID(sep) {
			return nil, fmt.Errorf("%s: cls id %d or sep id %d is outside the vocabulary", cfg.Type, cls, sep)
		}
		if cfg.Type == "BertProcessing" {
			return &postProcessor{
				single: []templatePart{specialPart(cls, 0), seqPart(0, 0), specialPart(sep, 0)},
				pair: []templatePart{specialPart(cls, 0), seqPart(0, 0), specialPart(sep, 0),
					seqPart(1, 1), specialPart(sep, 1)},
				hasPair: true,
			}, nil
		}
		// RobertaProcessing gives every token type id 0, pairs included ("Roberta is weird" in roberta.rs;
		// tokenizers.js gives the second sequence 1, we follow the Rust crate).
		return &postProcessor{
			single: []templatePart{specialPart(cls, 0), seqPart(0, 0), specialPart(sep, 0)},
			pair: []templatePart{specialPart(cls, 0), seqPart(0, 0), specialPart(sep, 0),
				specialPart(sep, 0), seqPart(1, 0), specialPart(sep, 0)},
			hasPair: true,
			trim:    cfg.trimOffsets(),
		}, nil
	case "":
		return nil, errors.New(`"type" is missing`)
	default:
		return nil, fmt.Errorf("unsupported type %q", cfg.Type)
	}
}

// buildPostProcessorSequence reads a Sequence of post-processors, such as [ByteLevel, TemplateProcessing]. ByteLevel
// members change no ids; one other member (the one that adds special tokens and sets type ids) is what the
// sequence amounts to. Two of those would wrap the sequences twice, which no tokenizer file does: refused.
func buildPostProcessorSequence(cfg hfPostProcessor, validID func(int64) bool) (*postProcessor, error) {
	var chosen *postProcessor
	var trim *trimOffsets
	for i, sub := range cfg.Processors {
		if isJSONNull(sub) {
			return nil, fmt.Errorf("Sequence[%d]: null", i)
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(sub, &head); err != nil {
			return nil, fmt.Errorf("Sequence[%d]: %w", i, err)
		}
		p, err := buildPostProcessor(sub, validID)
		if err != nil {
			return nil, fmt.Errorf("Sequence[%d]: %w", i, err)
		}
		if head.Type == "ByteLevel" {
			trim = p.trim
			continue
		}
		if chosen != nil {
			return nil, fmt.Errorf("Sequence[%d]: unsupported: a second %s after a post-processor that already adds special tokens", i, head.Type)
		}
		chosen = p
	}
	if chosen == nil {
		chosen = plainPostProcessor()
	}
	if trim != nil {
		chosen.trim = trim
	}
	return chosen, nil
}

func buildTemplate(cfg hfPostProcessor, validID func(int64) bool) (*postProcessor, error) {
	convert := func(name string, pieces []hfTemplatePiece) ([]templatePart, error) {
		var parts []templatePart
		for i, p := range pieces {
			switch {
			case p.SpecialToken != nil && p.Sequence == nil:
				st, ok := cfg.SpecialTokens[p.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("%s[%d]: special token %q is not in special_tokens", name, i, p.SpecialToken.ID)
				}
				if len(st.IDs) == 0 {
					return nil, fmt.Errorf("special_tokens[%q] has no ids", p.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if !validID(id) {
						return nil, fmt.Errorf("special_tokens[%q]: id %d is outside the vocabulary", p.SpecialToken.ID, id)
					}
				}
				parts = append(parts, templatePart{special: st.IDs, typeID: p.SpecialToken.TypeID})
			case p.Sequence != nil && p.SpecialToken == nil:
				switch p.Sequence.ID {
				case "A":
					parts = append(parts, seqPart(0, p.Sequence.TypeID))
				case "B":
					if name == "single" {
						return nil, fmt.Errorf("single[%d]: sequence B in the single template", i)
					}
					parts = append(parts, seqPart(1, p.Sequence.TypeID))
				default:
					return nil, fmt.Errorf("%s[%d]: unknown sequence %q", name, i, p.Sequence.ID)
				}
			default:
				return nil, fmt.Errorf("%s[%d]: want one of SpecialToken or Sequence", name, i)
			}
		}
		return parts, nil
	}
	single, err := convert("single", cfg.Single)
	if err != nil {
		return nil, fmt.Errorf("TemplateProcessing: %w", err)
	}
	if len(single) == 0 {
		return nil, errors.New(`TemplateProcessing: "single" is missing`)
	}
	pair, err := convert("pair", cfg.Pair)
	if err != nil {
		return nil, fmt.Errorf("TemplateProcessing: %w", err)
	}
	return &postProcessor{single: single, pair: pair, hasPair: len(pair) > 0}, nil
}

// truncateLongestFirst is tokenizers' truncate_encodings with the LongestFirst strategy and no stride, cutting to
// maxLen tokens in all (room for the special tokens already taken off), at the end of each sequence (direction
// right) or at its start (KeepEnd, direction left). For a pair, the longer sequence is cut first; when even the
// shorter one does not fit in half, each gets half of maxLen and the longer one the odd token.
func truncateLongestFirst(a, b []int64, maxLen int, pair bool, keep Keep) ([]int64, []int64, bool) {
	total := len(a) + len(b)
	if total <= maxLen {
		return a, b, false
	}
	cut := func(s []int64, n int) []int64 {
		n = min(len(s), n)
		if keep == KeepEnd {
			return s[len(s)-n:]
		}
		return s[:n]
	}
	if !pair {
		return cut(a, maxLen), b, true
	}
	n1, n2 := len(a), len(b)
	swap := n1 > n2
	if swap {
		n1, n2 = n2, n1
	}
	if n1 > maxLen {
		n2 = n1
	} else {
		n2 = max(n1, maxLen-n1)
	}
	if n1+n2 > maxLen {
		n1 = maxLen / 2
		n2 = n1 + maxLen%2
	}
	if swap {
		n1, n2 = n2, n1
	}
	return cut(a, n1), cut(b, n2), true
}
