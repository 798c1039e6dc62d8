package xcontent

import (
	"strings"
	"testing"
)

func TestJavaDouble(t *testing.T) {
	for f, want := range map[float64]string{
		5: "5.0", 1.5: "1.5", -2: "-2.0", 0: "0.0", 125: "125.0",
		1e7: "1.0E7", 1.25e21: "1.25E21", 0.001: "0.001", 0.0001: "1.0E-4", 123456.5: "123456.5",
	} {
		if got := JavaDouble(f); got != want {
			t.Errorf("JavaDouble(%v) = %q; want %q", f, got, want)
		}
	}
}

func TestParseKeepsOrderAndPositions(t *testing.T) {
	obj, err := Parse([]byte("{\n  \"b\": 1,\n  \"a\": {\"x\": [true, null, \"s\", 2.50]}\n}"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := obj.JavaString(), "{b=1, a={x=[true, null, s, 2.5]}}"; got != want {
		t.Errorf("JavaString = %q; want %q", got, want)
	}
	if got, want := obj.KeyPos("a"), (Position{3, 3}); got != want {
		t.Errorf("KeyPos(a) = %v; want %v", got, want)
	}
	if got, want := obj.ValuePos("b"), (Position{2, 8}); got != want {
		t.Errorf("ValuePos(b) = %v; want %v", got, want)
	}
	v, _ := obj.Remove("b")
	if JavaValue(v) != "1" || obj.Has("b") || len(obj.Keys()) != 1 {
		t.Errorf("Remove(b) = %v, keys now %v", v, obj.Keys())
	}
}

func TestParseErrors(t *testing.T) {
	for body, want := range map[string]string{
		`{"a":1,}`:       "[1:8] invalid character '}' looking for beginning of object key string",
		"{\"a\":\n\"b\"": "[2:4] Unexpected end-of-input",
		`{"a":1} {}`:     "[1:9] unexpected content after the end of the JSON object",
		`"s"`:            "[1:1] Expected START_OBJECT but was: VALUE_STRING",
		`{"a":1,"a":2}`:  "[1:8] Duplicate field 'a'",
	} {
		_, err := Parse([]byte(body))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", body)
			continue
		}
		e := err.(interface{ Error() string })
		if got := "x_content_parse_exception: " + want; len(e.Error()) < len(got) || e.Error()[:len(got)] != got {
			t.Errorf("Parse(%q) = %q; want prefix %q", body, e.Error(), got)
		}
	}
}

func TestParseDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	_, err := Parse([]byte(`{"a":` + deep + `}`))
	if err == nil || !strings.Contains(err.Error(), "[1:1005] Document nesting depth exceeds the maximum allowed (1000)") {
		t.Fatalf("Parse(too deep) = %v", err)
	}
	ok := strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1)
	if _, err := Parse([]byte(`{"a":` + ok + `}`)); err != nil {
		t.Fatalf("Parse(%d levels) = %v", MaxDepth, err)
	}
}

// BenchmarkParseLargeArray keeps parsing linear in the body size: positions
// are computed for errors only.
func BenchmarkParseLargeArray(b *testing.B) {
	body := []byte(`{"input":[` + strings.Repeat(`"a",`, 100_000) + `"a"]}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendJavaFloat(t *testing.T) {
	for f, want := range map[float32]string{
		3: "3.0", 0.1: "0.1", -0.25: "-0.25", 0: "0.0", 1e-5: "1.0E-5", 1.5e7: "1.5E7",
		0.001: "0.001", 123.456: "123.456", 0.98765432: "0.9876543",
	} {
		if got := string(AppendJavaFloat(nil, f)); got != want {
			t.Errorf("AppendJavaFloat(%v) = %q; want %q", f, got, want)
		}
	}
}
