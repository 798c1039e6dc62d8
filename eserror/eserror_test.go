package eserror

import (
	"errors"
	"fmt"
	"testing"
)

func TestEnvelope(t *testing.T) {
	inner := BadRequest("Resource not found at [<url>] & more")
	outer := BadRequest("Could not complete inference endpoint creation as validation call to service threw an exception.")
	outer.Cause = inner
	outer.RootIsCause = true
	b, err := outer.MarshalJSON() // json.Marshal would escape '<' again
	if err != nil {
		t.Fatal(err)
	}
	want := `{"error":{"root_cause":[{"type":"status_exception","reason":"Resource not found at [<url>] & more"}],"type":"status_exception","reason":"Could not complete inference endpoint creation as validation call to service threw an exception.","caused_by":{"type":"status_exception","reason":"Resource not found at [<url>] & more"}},"status":400}`
	if string(b) != want {
		t.Errorf("envelope =\n%s\nwant\n%s", b, want)
	}
}

func TestValidationAndAs(t *testing.T) {
	v := Validation(TypeValidation, "a", "b")
	if v.Reason != "Validation Failed: 1: a;2: b;" || v.Status != 400 {
		t.Errorf("Validation = %+v", v)
	}
	wrapped := fmt.Errorf("context: %w", NotFound("Inference endpoint not found [%s]", "x"))
	if e := As(wrapped); e.Status != 404 || e.Type != TypeResourceNotFound || e.Reason != "Inference endpoint not found [x]" {
		t.Errorf("As(wrapped) = %+v", e)
	}
	if e := As(errors.New("disk on fire")); e.Status != 500 || e.Cause == nil || e.Cause.Reason != "disk on fire" {
		t.Errorf("As(plain error) = %+v", e)
	}
}

func TestParseRendersTheSame(t *testing.T) {
	inner := NotFound("offline mode and not in the cache")
	outer := New(404, TypeResourceNotFound, "Could not deploy model [x] as the model cannot be found.")
	outer.Cause = inner
	wrapping := Internal(errors.New("checksum mismatch"), "Could not download model [x]")
	wrapping.RootIsCause = true
	for _, e := range []*Error{BadRequest("plain"), outer, wrapping} {
		want, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(want)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := back.MarshalJSON(); string(got) != string(want) || back.Status != e.Status {
			t.Errorf("parsed back:\n%s\nwant\n%s", got, want)
		}
	}
	if _, err := Parse([]byte(`{"acknowledged":true}`)); err == nil {
		t.Error("a body without an error parsed")
	}
}
