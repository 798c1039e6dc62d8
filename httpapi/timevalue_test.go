package httpapi

import (
	"errors"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/eserror"
)

func TestParseTimeValue(t *testing.T) {
	ok := map[string]time.Duration{
		"30s": 30 * time.Second, "500ms": 500 * time.Millisecond, "2nanos": 2, "3micros": 3 * time.Microsecond,
		"5m": 5 * time.Minute, "1h": time.Hour, "2d": 48 * time.Hour, " 10S ": 10 * time.Second, "0": 0, "-1": -1, "-1s": -1,
	}
	for in, want := range ok {
		got, err := ParseTimeValue(in, "timeout")
		if err != nil || got != want {
			t.Errorf("ParseTimeValue(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"abc":        "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized",
		"10":         "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized",
		"5M":         "failed to parse setting [timeout] with value [5M] as a time value: unit is missing or unrecognized",
		"1.5s":       "failed to parse [1.5s], fractional time values are not supported",
		"-5s":        "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported",
		"xs":         "failed to parse [xs]",
		"200000000d": "failed to parse setting [timeout] with value [200000000d] as a time value: it exceeds 2562047h47m16.854775807s",
	}
	for in, want := range bad {
		_, err := ParseTimeValue(in, "timeout")
		var e *eserror.Error
		if !errors.As(err, &e) || e.Type != eserror.TypeIllegalArgument || e.Reason != want || e.Status != 400 {
			t.Errorf("ParseTimeValue(%q) error = %v; want illegal_argument_exception %q", in, err, want)
		}
	}
}
