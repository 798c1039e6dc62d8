package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/eserror"
)

// ParseTimeValue parses an Elasticsearch time value ("30s", "500ms",
// "2nanos") exactly as TimeValue.parseTimeValue does, with its error texts;
// setting names the parameter in them. "-1" means no timeout and yields a
// negative duration.
func ParseTimeValue(s, setting string) (time.Duration, error) {
	fail := func(format string, args ...any) error {
		return eserror.New(http.StatusBadRequest, eserror.TypeIllegalArgument, format, args...)
	}
	norm := strings.ToLower(strings.TrimSpace(s))
	var unit time.Duration
	var suffix string
	switch {
	case strings.HasSuffix(norm, "nanos"):
		unit, suffix = time.Nanosecond, "nanos"
	case strings.HasSuffix(norm, "micros"):
		unit, suffix = time.Microsecond, "micros"
	case strings.HasSuffix(norm, "ms"):
		unit, suffix = time.Millisecond, "ms"
	case strings.HasSuffix(norm, "s"):
		unit, suffix = time.Second, "s"
	case strings.HasSuffix(s, "m"): // case-sensitive: "M" would be months
		unit, suffix = time.Minute, "m"
	case strings.HasSuffix(norm, "h"):
		unit, suffix = time.Hour, "h"
	case strings.HasSuffix(norm, "d"):
		unit, suffix = 24*time.Hour, "d"
	case norm == "-1":
		return -1, nil
	case norm == "0":
		return 0, nil
	default:
		return 0, fail("failed to parse setting [%s] with value [%s] as a time value: unit is missing or unrecognized", setting, s)
	}
	num := strings.TrimSpace(strings.TrimSuffix(norm, suffix))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		if _, ferr := strconv.ParseFloat(num, 64); ferr == nil {
			return 0, fail("failed to parse [%s], fractional time values are not supported", s)
		}
		return 0, fail("failed to parse [%s]", s)
	}
	switch {
	case n == -1:
		return -1, nil
	case n < -1:
		return 0, fail("failed to parse setting [%s] with value [%s] as a time value: negative durations are not supported", setting, s)
	case n > math.MaxInt64/int64(unit):
		// Java's TimeValue holds it; a Go duration tops out near 292 years.
		return 0, fail("failed to parse setting [%s] with value [%s] as a time value: it exceeds %s", setting, s, time.Duration(math.MaxInt64))
	}
	return time.Duration(n) * unit, nil
}
