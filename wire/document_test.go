package wire

import (
	"strings"
	"testing"
)

func TestCutID(t *testing.T) {
	for _, tc := range []struct{ in, id, rest string }{
		{`{"id":"a","input":"x"}`, "a", `{` + strings.Repeat(" ", 9) + `"input":"x"}`},
		{`{"input":"x","id":"a"}`, "a", `{"input":"x"         }`},
		{`{"input":"x", "id" : "a" ,"input_type":"ingest"}`, "a", `{"input":"x"` + strings.Repeat(" ", 13) + `,"input_type":"ingest"}`},
		{`{"id":"a"}`, "a", `{        }`},
		{`{"input":"x"}`, "", `{"input":"x"}`},
		{`[1]`, "", `[1]`},
		{`{"input":`, "", `{"input":`},
	} {
		id, rest, err := CutID([]byte(tc.in))
		if err != nil || id != tc.id || string(rest) != tc.rest {
			t.Errorf("CutID(%s) = %q, %q, %v; want %q, %q", tc.in, id, rest, err, tc.id, tc.rest)
		}
	}
	if _, _, err := CutID([]byte(`{"id":1,"input":"x"}`)); err == nil {
		t.Error("numeric id accepted")
	}
}
