package main

import (
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"serve", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("serve --help exited %d", code)
	}
	for _, want := range []string{"Usage: jetinfer serve", "-http-addr HOST:PORT", "-data-dir DIR", "-nats-url URL", "(env JETINFER_HTTP_ADDR)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("serve --help output lacks %q:\n%s", want, errOut.String())
		}
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"serve", "--kv-replicas", "9"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--kv-replicas must be between 1 and 5") {
		t.Errorf("invalid flag value: exit %d, stderr %q", code, errOut.String())
	}
}
