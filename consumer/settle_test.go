package consumer

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestDecide(t *testing.T) {
	transient := errors.New("onnx run failed")
	invalid := fmt.Errorf("%w: [input] must be a string", errInvalid)
	for _, tt := range []struct {
		name       string
		err        error
		delivered  uint64
		maxDeliver int
		want       outcome
	}{
		{"success", nil, 1, 5, outcomeAck},
		{"success on the last delivery", nil, 5, 5, outcomeAck},
		{"transient failure", transient, 1, 5, outcomeRetry},
		{"transient failure before the last delivery", transient, 4, 5, outcomeRetry},
		{"transient failure on the last delivery", transient, 5, 5, outcomeFail},
		{"past the last delivery", transient, 6, 5, outcomeFail},
		{"invalid on the first delivery", invalid, 1, 5, outcomeFail},
		{"cancelled by a stop", context.Canceled, 1, 5, outcomeRetry},
		{"one delivery allowed", transient, 1, 1, outcomeFail},
	} {
		if got := decide(tt.err, tt.delivered, tt.maxDeliver); got != tt.want {
			t.Errorf("%s: decide(%v, %d, %d) = %s; want %s", tt.name, tt.err, tt.delivered, tt.maxDeliver, got, tt.want)
		}
	}
}

func TestAfterPublishFailure(t *testing.T) {
	tooLarge := fmt.Errorf("publish: %w", nats.ErrMaxPayload)
	for _, tt := range []struct {
		name string
		o    outcome
		err  error
		last bool
		want outcome
	}{
		{"result too large for any message", outcomeAck, tooLarge, false, outcomeFail},
		{"result not stored in time", outcomeAck, context.DeadlineExceeded, false, outcomeRetry},
		{"result not stored on the last attempt", outcomeAck, context.DeadlineExceeded, true, outcomeFail},
		{"server unreachable", outcomeAck, nats.ErrNoResponders, false, outcomeRetry},
		{"error result not stored", outcomeFail, context.DeadlineExceeded, false, outcomeRetry},
		{"error result not stored on the last attempt", outcomeFail, context.DeadlineExceeded, true, outcomeRetry},
		{"error result too large", outcomeFail, tooLarge, false, outcomeRetry},
	} {
		if got := afterPublishFailure(tt.o, tt.err, tt.last); got != tt.want {
			t.Errorf("%s: afterPublishFailure(%s, %v, %t) = %s; want %s", tt.name, tt.o, tt.err, tt.last, got, tt.want)
		}
	}
}
