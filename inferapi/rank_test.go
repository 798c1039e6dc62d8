package inferapi

import (
	"reflect"
	"testing"
)

func TestRank(t *testing.T) {
	scores := []float32{0.1, 0.9, -2, 0.9, 0.5}
	three, ten, zero := 3, 10, 0
	if got, want := Rank(scores, &three), []RankedDoc{{1, 0.9}, {3, 0.9}, {4, 0.5}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Rank(top 3) = %v; want %v", got, want)
	}
	if got := Rank(scores, &ten); len(got) != 5 || got[4] != (RankedDoc{2, -2}) {
		t.Errorf("Rank(top 10 of 5) = %v", got)
	}
	if got := Rank(scores, nil); len(got) != 5 {
		t.Errorf("Rank(nil) = %v", got)
	}
	if got := Rank(scores, &zero); len(got) != 0 {
		t.Errorf("Rank(top 0) = %v", got)
	}
}

func TestRerankResponse(t *testing.T) {
	ranked := []RankedDoc{{Index: 1, Score: 2}, {Index: 0, Score: -0.5}}
	docs := []string{"a <b> & c", `say "hi"`}
	if got, want := string(RerankResponse(ranked, docs, true)), `{"rerank":[{"index":1,"relevance_score":2.0,"text":"say \"hi\""},{"index":0,"relevance_score":-0.5,"text":"a <b> & c"}]}`; got != want {
		t.Errorf("RerankResponse = %s; want %s", got, want)
	}
	if got, want := string(RerankResponse(ranked[:1], docs, false)), `{"rerank":[{"index":1,"relevance_score":2.0}]}`; got != want {
		t.Errorf("RerankResponse without text = %s; want %s", got, want)
	}
}
