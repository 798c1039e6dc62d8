package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/auth"
)

// TestAuthCommands: keys and users created, listed and invalidated on a
// file that keeps only their hashes.
func TestAuthCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auth.json")
	cmd := func(args ...string) (int, string, string) {
		var out, errOut strings.Builder
		code := run(append([]string{"auth"}, append(args, "--auth-file", file)...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, stderr := cmd("create-key", "--name", "app", "--privileges", "monitor_inference, manage_inference", "--expiration", "2d")
	var key auth.CreatedKey
	if err := json.Unmarshal([]byte(out), &key); code != 0 || err != nil || key.ID == "" || key.APIKey == "" || key.Expiration == 0 {
		t.Fatalf("create-key: exit %d, %q, %q", code, out, stderr)
	}
	code, out, _ = cmd("add-user", "--username", "bob", "--privileges", "monitor")
	if code != 0 || !strings.HasPrefix(out, "{\n  \"username\": \"bob\",\n  \"password\": \"") {
		t.Fatalf("add-user: exit %d, %q", code, out)
	}
	creds, err := auth.LoadCredentials(file)
	if err != nil || len(creds.APIKeys) != 1 || len(creds.Users) != 1 ||
		strings.Join(creds.APIKeys[0].Privileges, ",") != "monitor_inference,manage_inference" {
		t.Fatalf("file holds %+v (%v)", creds, err)
	}
	code, out, _ = cmd("invalidate-key", key.ID)
	if code != 0 || out != `{
  "error_count": 0,
  "invalidated_api_keys": [
    "`+key.ID+`"
  ],
  "previously_invalidated_api_keys": []
}
` {
		t.Errorf("invalidate-key: exit %d, %q", code, out)
	}
	code, out, _ = cmd("list")
	if code != 0 || !strings.Contains(out, key.ID+"  app ") || !strings.Contains(out, "invalidated") || !strings.Contains(out, "bob") ||
		strings.Contains(out, key.APIKey) {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create-key", "--name", "x", "--privileges", "read"}, "unknown cluster privilege [read]"},
		{[]string{"create-key", "--name", "x", "--privileges", "monitor", "--expiration", "soon"}, `expiration "soon"`},
		{[]string{"add-user", "--username", "bob", "--privileges", "monitor"}, "user [bob] exists"},
		{[]string{"invalidate-key", "nope"}, "no API key with id [nope]"},
	} {
		if code, _, stderr := cmd(tt.args...); code != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %q; want %q", tt.args, code, stderr, tt.want)
		}
	}
}
