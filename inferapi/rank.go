package inferapi

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/jetinfer/jetinfer/xcontent"
)

// RankedDoc is one rerank result: the document's position in the input and
// its score.
type RankedDoc struct {
	Index int
	Score float32
}

// Rank orders scores from most to least relevant, as Elasticsearch's
// RankedDocsResults do (ties keep input order), keeping the first topN; a
// topN of nil, or larger than the input, keeps all.
func Rank(scores []float32, topN *int) []RankedDoc {
	ranked := make([]RankedDoc, len(scores))
	for i, s := range scores {
		ranked[i] = RankedDoc{Index: i, Score: s}
	}
	slices.SortStableFunc(ranked, func(a, b RankedDoc) int { return cmp.Compare(b.Score, a.Score) })
	if topN != nil && *topN >= 0 && *topN < len(ranked) {
		ranked = ranked[:*topN]
	}
	return ranked
}

// RerankResponse writes a rerank response body: the ranked documents, with
// their text when withText.
func RerankResponse(ranked []RankedDoc, docs []string, withText bool) []byte {
	b := []byte(`{"rerank":[`)
	for i, r := range ranked {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(r.Index), 10)
		b = append(b, `,"relevance_score":`...)
		b = xcontent.AppendJavaFloat(b, r.Score)
		if withText {
			text, _ := xcontent.Marshal(docs[r.Index])
			b = append(append(b, `,"text":`...), text...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}
