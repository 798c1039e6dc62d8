package config

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/xcontent"
)

// ChunkingStrategy names how inputs are split before inference.
type ChunkingStrategy string

// The chunking strategies of Elasticsearch's ChunkingStrategy enum.
const (
	ChunkWord      ChunkingStrategy = "word"
	ChunkSentence  ChunkingStrategy = "sentence"
	ChunkRecursive ChunkingStrategy = "recursive"
	ChunkNone      ChunkingStrategy = "none"
)

// Bounds from Elasticsearch's chunking settings classes.
const (
	wordMinChunkSize      = 10
	sentenceMinChunkSize  = 20
	recursiveMinChunkSize = 10
	maxSeparators         = 50
)

// Separator patterns of Elasticsearch's SeparatorGroup: Java regexes,
// applied in MULTILINE mode. The chunker matches these four by hand.
const (
	SeparatorParagraph = `(?<!\n)\n\n(?!\n)`
	SeparatorLine      = `(?<!\n)\n(?!\n)`
	SeparatorSetextH2  = `\n^(?!\s*$).*\n-{1,}\n`
	SeparatorSetextH1  = `\n^(?!\s*$).*\n={1,}\n`
)

// separatorGroups are the named groups of recursive chunking.
var separatorGroups = map[string][]string{
	"plaintext": {SeparatorParagraph, SeparatorLine},
	"markdown": {
		"\n# ", "\n## ", "\n### ", "\n#### ", "\n##### ", "\n###### ",
		SeparatorSetextH2, SeparatorSetextH1,
	},
}

// SeparatorGroup returns the separators of a named group (plaintext or
// markdown).
func SeparatorGroup(name string) ([]string, bool) {
	g, ok := separatorGroups[name]
	return slices.Clone(g), ok
}

// ChunkingSettings says how an endpoint splits its inputs. Only the fields of
// Strategy are meaningful.
type ChunkingSettings struct {
	Strategy ChunkingStrategy
	// MaxChunkSize is in words (word, sentence, recursive).
	MaxChunkSize int
	// Overlap is in words (word).
	Overlap int
	// SentenceOverlap is 0 or 1 (sentence).
	SentenceOverlap int
	// Separators are regular expressions tried in order (recursive).
	Separators []string
}

// DefaultChunking is Elasticsearch's default for new embedding endpoints.
func DefaultChunking() *ChunkingSettings {
	return &ChunkingSettings{Strategy: ChunkSentence, MaxChunkSize: 250, SentenceOverlap: 1}
}

// LegacyChunking is what Elasticsearch applies to embedding endpoints stored
// without chunking settings (created before 8.16).
func LegacyChunking() *ChunkingSettings {
	return &ChunkingSettings{Strategy: ChunkWord, MaxChunkSize: 250, Overlap: 100}
}

// MarshalJSON writes the settings as Elasticsearch does, fields in its order.
func (c ChunkingSettings) MarshalJSON() ([]byte, error) {
	switch c.Strategy {
	case ChunkWord:
		return xcontent.Marshal(struct {
			Strategy     ChunkingStrategy `json:"strategy"`
			MaxChunkSize int              `json:"max_chunk_size"`
			Overlap      int              `json:"overlap"`
		}{c.Strategy, c.MaxChunkSize, c.Overlap})
	case ChunkSentence:
		return xcontent.Marshal(struct {
			Strategy        ChunkingStrategy `json:"strategy"`
			MaxChunkSize    int              `json:"max_chunk_size"`
			SentenceOverlap int              `json:"sentence_overlap"`
		}{c.Strategy, c.MaxChunkSize, c.SentenceOverlap})
	case ChunkRecursive:
		return xcontent.Marshal(struct {
			Strategy     ChunkingStrategy `json:"strategy"`
			MaxChunkSize int              `json:"max_chunk_size"`
			Separators   []string         `json:"separators"`
		}{c.Strategy, c.MaxChunkSize, c.Separators})
	case ChunkNone:
		return xcontent.Marshal(struct {
			Strategy ChunkingStrategy `json:"strategy"`
		}{c.Strategy})
	}
	return nil, fmt.Errorf("unknown chunking strategy %q", c.Strategy)
}

// parseChunking follows ChunkingSettingsBuilder.fromMap: an absent or empty
// object means the default; each strategy validates its own keys and
// collects every problem into one validation_exception.
func parseChunking(raw any) (*ChunkingSettings, error) {
	if raw == nil {
		return DefaultChunking(), nil
	}
	m, err := asObject(raw, "chunking_settings")
	if err != nil {
		return nil, err
	}
	if m.Empty() {
		return DefaultChunking(), nil
	}
	strategyValue, ok := m.Get("strategy")
	if !ok {
		return nil, eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument,
			"Can't generate Chunker without ChunkingStrategy provided")
	}
	strategy := ChunkingStrategy(xcontent.JavaValue(strategyValue))
	switch strategy {
	case ChunkNone:
		return &ChunkingSettings{Strategy: ChunkNone}, nil
	case ChunkWord, ChunkSentence, ChunkRecursive:
	default:
		return nil, eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument,
			"Invalid chunkingStrategy %s", xcontent.JavaValue(strategyValue))
	}

	v := &validation{}
	validKeys := map[ChunkingStrategy][]string{
		ChunkWord:      {"strategy", "max_chunk_size", "overlap"},
		ChunkSentence:  {"strategy", "max_chunk_size", "sentence_overlap"},
		ChunkRecursive: {"strategy", "max_chunk_size", "separator_group", "separators"},
	}[strategy]
	var invalid []string
	for _, k := range m.Keys() {
		if !slices.Contains(validKeys, k) {
			invalid = append(invalid, k)
		}
	}
	if len(invalid) > 0 {
		name := map[ChunkingStrategy]string{
			ChunkWord:      "Word based chunking settings",
			ChunkSentence:  "Sentence based chunking settings",
			ChunkRecursive: "Recursive chunking settings",
		}[strategy]
		v.add("%s can not have the following settings: %s", name, javaList(invalid))
	}

	const scope = "chunking_settings"
	cs := &ChunkingSettings{Strategy: strategy}
	minSize := map[ChunkingStrategy]int{ChunkWord: wordMinChunkSize, ChunkSentence: sentenceMinChunkSize, ChunkRecursive: recursiveMinChunkSize}[strategy]
	size, sizeOK := v.requiredPositiveInt(m, "max_chunk_size", scope)
	if sizeOK && size < minSize {
		v.add("[%s] Invalid value [%s]. [max_chunk_size] must be greater than or equal to [%s]", scope, xcontent.JavaDouble(float64(size)), xcontent.JavaDouble(float64(minSize)))
		sizeOK = false
	}
	cs.MaxChunkSize = size

	switch strategy {
	case ChunkWord:
		if sizeOK {
			overlap, ok := v.requiredPositiveInt(m, "overlap", scope)
			if ok && overlap > size/2 {
				v.add("[%s] Invalid value [%s]. [overlap] must be less than or equal to [%s]", scope, xcontent.JavaDouble(float64(overlap)), xcontent.JavaDouble(float64(size/2)))
			}
			cs.Overlap = overlap
		}
	case ChunkSentence:
		cs.SentenceOverlap = 1
		if overlap, present, ok := v.removeInt(m, "sentence_overlap"); present && ok {
			if overlap < 0 || overlap > 1 {
				v.add("sentence_overlap[%d] must be either 0 or 1", overlap)
			}
			cs.SentenceOverlap = overlap
		}
	case ChunkRecursive:
		group, hasGroup := v.optionalString(m, "separator_group", scope)
		if hasGroup {
			if _, ok := separatorGroups[group]; !ok {
				v.add("[%s] Invalid value [%s] received. [separator_group] must be one of [markdown, plaintext]", scope, group)
				hasGroup = false
			}
		}
		separators, hasSeparators := v.optionalStringList(m, "separators")
		if hasSeparators && hasGroup {
			v.add("Recursive chunking settings can not have both separators and separator_set")
		}
		switch {
		case hasGroup:
			separators = separatorGroups[group]
		case hasSeparators && len(separators) == 0:
			v.add("Recursive chunking settings can not have an empty list of separators")
		case !hasSeparators:
			separators = separatorGroups["plaintext"]
		}
		if len(separators) > maxSeparators {
			v.add("separators list size [%d] must not exceed [%d]", len(separators), maxSeparators)
		}
		cs.Separators = slices.Clone(separators)
	}
	if err := v.err(eserror.TypeValidation); err != nil {
		return nil, err
	}
	return cs, nil
}
