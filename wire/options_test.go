package wire

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/inferapi"
)

func TestOptionsHeader(t *testing.T) {
	msg := nats.NewMsg("x")
	SetOptions(msg, inferapi.Options{})
	if len(msg.Header) != 0 {
		t.Fatalf("the zero options wrote %v", msg.Header)
	}
	no := false
	want := inferapi.Options{Dimensions: 8, CountTokens: true, Normalize: &no, Scores: inferapi.ScoresRaw, Truncation: inferapi.TruncateKeepEnd,
		Prompt: "query", SparseIDs: true, Tokenize: true, SpecialTokens: true, Describe: true}
	SetOptions(msg, want)
	got, err := Options(msg)
	if err != nil || got.Normalize == nil || *got.Normalize || got.Dimensions != 8 || got.Prompt != "query" || got.Scores != inferapi.ScoresRaw ||
		got.Truncation != inferapi.TruncateKeepEnd || !got.CountTokens || !got.SparseIDs || !got.Tokenize || !got.SpecialTokens || !got.Describe {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// An option this worker does not know is refused, not ignored.
	msg.Header.Set(HeaderOptions, `{"dimensions":8,"pooling":"last_token"}`)
	if _, err := Options(msg); err == nil || !strings.Contains(err.Error(), `unknown field "pooling"`) {
		t.Fatalf("unknown option: %v", err)
	}
	msg.Header.Set(HeaderOptions, `{"dimensions":-1}`)
	if _, err := Options(msg); err == nil {
		t.Fatal("negative dimensions accepted")
	}
}
