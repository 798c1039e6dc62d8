package auth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/jetinfer/jetinfer/eserror"
)

// TestGrantedBy: the privileges Elasticsearch lists as granting each action
// jetinfer serves (8.14 and later), in its order.
func TestGrantedBy(t *testing.T) {
	for action, want := range map[string]string{
		ActionMain:             "monitor,manage,all",
		ActionInferenceGet:     "monitor_inference,manage_inference,monitor,manage,all",
		ActionInferencePost:    "monitor_inference,manage_inference,monitor,manage,all",
		ActionInferencePut:     "manage_inference,manage,all",
		ActionInferenceUpdate:  "manage_inference,manage,all",
		ActionInferenceDelete:  "manage_inference,manage,all",
		ActionDeploymentStart:  "manage_inference,manage_ml,manage,all",
		ActionDeploymentStop:   "manage_inference,manage_ml,manage,all",
		ActionDeploymentUpdate: "manage_ml,manage,all",
		ActionModelStats:       "monitor_ml,manage_ml,monitor,manage,all",
	} {
		if got := strings.Join(grantedBy(action), ","); got != want {
			t.Errorf("%s is granted by [%s]; want [%s]", action, got, want)
		}
	}
}

// fixture is an auth file with one key of each kind and a user.
type fixture struct {
	path                           string
	monitor, manage, revoked, late CreatedKey
	userPassword                   string
	guard                          *Guard
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{path: filepath.Join(t.TempDir(), "auth.json")}
	var c Credentials
	now := time.Now()
	add := func(name string, privs []string, ttl time.Duration) CreatedKey {
		k, err := c.AddKey(NewKey{Name: name, Owner: "alice", Privileges: privs, ExpiresIn: ttl, HashCost: bcrypt.MinCost}, now)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	f.monitor = add("searcher", []string{"monitor_inference"}, 0)
	f.manage = add("admin", []string{"manage_inference"}, 0)
	f.revoked = add("old", []string{"manage_inference"}, 0)
	f.late = add("short", []string{"manage_inference"}, time.Millisecond)
	if _, err := c.InvalidateKey(f.revoked.ID); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.userPassword, err = c.AddUser(NewUser{Username: "bob", Privileges: []string{"monitor_inference", "monitor_ml"}, HashCost: bcrypt.MinCost}); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(f.path); err != nil {
		t.Fatal(err)
	}
	if f.guard, err = NewGuard(GuardConfig{File: f.path, Log: zerolog.Nop()}); err != nil {
		t.Fatal(err)
	}
	return f
}

func request(target, authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// envelope is the error as a client reads it.
func envelope(t *testing.T, err error) (int, string) {
	t.Helper()
	e, ok := err.(*eserror.Error)
	if !ok {
		t.Fatalf("error %v (%T) is not an Elasticsearch exception", err, err)
	}
	body, merr := json.Marshal(e)
	if merr != nil {
		t.Fatal(merr)
	}
	return e.Status, string(body)
}

const challengesJSON = `"header":{"WWW-Authenticate":["Basic realm=\"security\", charset=\"UTF-8\"","Bearer realm=\"security\"","ApiKey"]}`

// unauthorized is Elasticsearch's 401 body for reason, with why as its
// additional_unsuccessful_credentials when set.
func unauthorized(reason, why string) string {
	fields := `"type":"security_exception","reason":"` + reason + `",`
	if why != "" {
		fields += `"additional_unsuccessful_credentials":"` + why + `",`
	}
	fields += challengesJSON
	return `{"error":{"root_cause":[{` + fields + `}],` + fields + `},"status":401}`
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	time.Sleep(2 * time.Millisecond) // the short key has expired
	const unable = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
	wrongSecret := base64.StdEncoding.EncodeToString([]byte(f.manage.ID + ":" + strings.Repeat("x", 22)))
	for _, tt := range []struct {
		name, target, authorization, action string
		status                              int
		body                                string
	}{
		{"no credentials", "/_inference/_all?pretty", "", ActionInferenceGet, 401,
			unauthorized("missing authentication credentials for REST request [/_inference/_all?pretty]", "")},
		{"unknown scheme", "/", "Digest x", ActionMain, 401, unauthorized("missing authentication credentials for REST request [/]", "")},
		{"api key", "/_inference/x", "ApiKey " + f.monitor.Encoded, ActionInferencePost, 0, ""},
		{"scheme in any case", "/_inference/x", "APIKEY " + f.monitor.Encoded, ActionInferencePost, 0, ""},
		{"bearer", "/_inference/x", "Bearer " + f.manage.Encoded, ActionInferencePut, 0, ""},
		{"unknown key", "/", "ApiKey " + base64.StdEncoding.EncodeToString([]byte("nope:secret")), ActionMain, 401,
			unauthorized(unable, "API key: unable to find apikey with id nope")},
		{"wrong secret", "/", "ApiKey " + wrongSecret, ActionMain, 401,
			unauthorized(unable, "API key: invalid credentials for API key ["+f.manage.ID+"]")},
		{"invalidated", "/", "ApiKey " + f.revoked.Encoded, ActionMain, 401,
			unauthorized(unable, "API key: api key ["+f.revoked.ID+"] has been invalidated")},
		{"expired", "/", "ApiKey " + f.late.Encoded, ActionMain, 401, unauthorized(unable, "API key: api key is expired")},
		{"not a key", "/", "ApiKey " + base64.StdEncoding.EncodeToString([]byte("no-colon")), ActionMain, 401,
			unauthorized(unable, "API key: invalid ApiKey value")},
		{"bearer wrong", "/", "Bearer " + wrongSecret, ActionMain, 401, unauthorized(unable, "oauth2 token: invalid token")},
		{"user", "/_ml/trained_models/_stats", basic("bob", f.userPassword), ActionModelStats, 0, ""},
		{"user wrong password", "/_inference/x?timeout=1s", basic("bob", "guess"), ActionInferencePost, 401,
			unauthorized("unable to authenticate user [bob] for REST request [/_inference/x?timeout=1s]", "")},
		{"unknown user", "/", basic("eve", "guess"), ActionMain, 401, unauthorized("unable to authenticate user [eve] for REST request [/]", "")},
		{"basic without colon", "/", "Basic " + base64.StdEncoding.EncodeToString([]byte("bob")), ActionMain, 401,
			unauthorized("invalid basic authentication header value", "")},
		{"basic not base64", "/", "Basic %%%", ActionMain, 401, unauthorized("invalid basic authentication header encoding", "")},
		{"key lacks manage_inference", "/_inference/x", "ApiKey " + f.monitor.Encoded, ActionInferencePut, 403,
			`{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:admin/xpack/inference/put] is unauthorized for API key id [` + f.monitor.ID +
				`] of user [alice], this action is granted by the cluster privileges [manage_inference,manage,all]"}],"type":"security_exception","reason":"action [cluster:admin/xpack/inference/put] is unauthorized for API key id [` +
				f.monitor.ID + `] of user [alice], this action is granted by the cluster privileges [manage_inference,manage,all]"},"status":403}`},
		{"user lacks manage_inference", "/_inference/x", basic("bob", f.userPassword), ActionInferenceDelete, 403,
			`{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:admin/xpack/inference/delete] is unauthorized for user [bob] with effective roles [monitor_inference,monitor_ml], this action is granted by the cluster privileges [manage_inference,manage,all]"}],"type":"security_exception","reason":"action [cluster:admin/xpack/inference/delete] is unauthorized for user [bob] with effective roles [monitor_inference,monitor_ml], this action is granted by the cluster privileges [manage_inference,manage,all]"},"status":403}`},
		{"GET / needs monitor", "/", "ApiKey " + f.manage.Encoded, ActionMain, 403,
			`{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for API key id [` + f.manage.ID +
				`] of user [alice], this action is granted by the cluster privileges [monitor,manage,all]"}],"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for API key id [` +
				f.manage.ID + `] of user [alice], this action is granted by the cluster privileges [monitor,manage,all]"},"status":403}`},
	} {
		err := f.guard.Check(request(tt.target, tt.authorization), tt.action)
		if tt.status == 0 {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: allowed; want %d", tt.name, tt.status)
			continue
		}
		status, body := envelope(t, err)
		if status != tt.status || body != tt.body {
			t.Errorf("%s: %d %s\nwant %d %s", tt.name, status, body, tt.status, tt.body)
		}
		for _, secret := range []string{f.manage.APIKey, f.monitor.APIKey, f.userPassword} {
			if strings.Contains(body, secret) {
				t.Errorf("%s: the answer shows a secret", tt.name)
			}
		}
	}
}

func TestAnonymousRoot(t *testing.T) {
	f := newFixture(t)
	g, err := NewGuard(GuardConfig{File: f.path, AnonymousRoot: true, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Check(request("/", ""), ActionMain); err != nil {
		t.Errorf("GET / without credentials: %v", err)
	}
	if err := g.Check(request("/_inference", ""), ActionInferenceGet); err == nil {
		t.Error("GET /_inference answered without credentials")
	}
	// Credentials given are checked, as Elasticsearch never falls back to
	// anonymous for them.
	if err := g.Check(request("/", "ApiKey "+base64.StdEncoding.EncodeToString([]byte("nope:x"))), ActionMain); err == nil {
		t.Error("GET / with a wrong key answered")
	}
}

// TestSecretsCostTheSameWhateverTheyShare: a wrong secret that shares all
// but its last character with the right one costs one full hash
// comparison, as one that shares nothing; the right one costs one, then
// none (its digest is remembered) until the file changes.
func TestSecretsCostTheSameWhateverTheyShare(t *testing.T) {
	f := newFixture(t)
	right := f.manage.APIKey
	nearly := right[:len(right)-1] + string(right[len(right)-1]^1)
	far := strings.Repeat("z", len(right))
	check := func(secret string) (checks int64, ok bool) {
		before := f.guard.HashChecks()
		err := f.guard.Check(request("/_inference/x", "ApiKey "+base64.StdEncoding.EncodeToString([]byte(f.manage.ID+":"+secret))), ActionInferencePut)
		return f.guard.HashChecks() - before, err == nil
	}
	// An unknown user costs a comparison too (with a dummy hash), so that
	// timing does not tell which users exist.
	before := f.guard.HashChecks()
	if err := f.guard.Check(request("/", basic("nobody", "x")), ActionMain); err == nil || f.guard.HashChecks()-before != 1 {
		t.Errorf("unknown user: %v, %d comparisons; want refused after 1", err, f.guard.HashChecks()-before)
	}
	for _, tt := range []struct {
		name, secret string
		checks       int64
		ok           bool
	}{
		{"nearly right", nearly, 1, false},
		{"far off", far, 1, false},
		{"right, first time", right, 1, true},
		{"right again", right, 0, true},
		{"nearly right after the right one", nearly, 1, false},
		{"right once more", right, 0, true},
	} {
		if checks, ok := check(tt.secret); checks != tt.checks || ok != tt.ok {
			t.Errorf("%s: %d hash comparisons, allowed %v; want %d, %v", tt.name, checks, ok, tt.checks, tt.ok)
		}
	}
}

// TestReload: keys added, invalidated or removed in the file apply without
// a restart; a file that does not parse leaves the credentials in force.
func TestReload(t *testing.T) {
	f := newFixture(t)
	c, err := LoadCredentials(f.path)
	if err != nil {
		t.Fatal(err)
	}
	added, err := c.AddKey(NewKey{Name: "new", Privileges: []string{"monitor_inference"}, HashCost: bcrypt.MinCost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.InvalidateKey(f.monitor.ID); err != nil {
		t.Fatal(err)
	}
	allowed := func(k CreatedKey) bool {
		return f.guard.Check(request("/_inference/x", "ApiKey "+k.Encoded), ActionInferencePost) == nil
	}
	if !allowed(f.monitor) || allowed(added) {
		t.Fatal("before the change: want the old key allowed and the new one refused")
	}
	if err := c.Save(f.path); err != nil {
		t.Fatal(err)
	}
	f.guard.mu.Lock()
	f.guard.checked = time.Time{} // as if reloadEvery had passed
	f.guard.mu.Unlock()
	if allowed(f.monitor) || !allowed(added) {
		t.Error("after the change: want the invalidated key refused and the new one allowed")
	}
	// A password changed in the file is in force at once: the old one, which
	// verified before, is refused although its digest is remembered.
	bob := func(password string) bool {
		return f.guard.Check(request("/_inference/x", basic("bob", password)), ActionInferencePost) == nil
	}
	if !bob(f.userPassword) {
		t.Fatal("bob's password refused")
	}
	newHash, err := bcrypt.GenerateFromPassword([]byte("rotated"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c.Users[0].Hash = string(newHash)
	if err := c.Save(f.path); err != nil {
		t.Fatal(err)
	}
	f.guard.mu.Lock()
	f.guard.checked = time.Time{}
	f.guard.mu.Unlock()
	if bob(f.userPassword) || !bob("rotated") {
		t.Error("after the password change: want the old password refused and the new one allowed")
	}
	if err := os.WriteFile(f.path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.guard.mu.Lock()
	f.guard.checked = time.Time{}
	f.guard.mu.Unlock()
	if !allowed(added) {
		t.Error("a broken file dropped the credentials in force")
	}
}

func TestCredentialsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.json")
	var c Credentials
	k, err := c.AddKey(NewKey{Name: "k", Privileges: []string{"manage_inference"}, ExpiresIn: 24 * time.Hour}, time.UnixMilli(1_700_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.ID) != 20 || len(k.APIKey) != 22 || k.Expiration != 1_700_086_400_000 {
		t.Errorf("created key %+v: want a 20-character id, a 22-character secret, expiration one day on", k)
	}
	if dec, _ := base64.StdEncoding.DecodeString(k.Encoded); string(dec) != k.ID+":"+k.APIKey {
		t.Errorf("encoded %q is not base64(id:api_key)", k.Encoded)
	}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), k.APIKey) || !strings.Contains(string(data), `"hash": "$2a$10$`) {
		t.Errorf("the file holds the secret, or no bcrypt hash: %s", data)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file %v (%v); want mode 600", fi, err)
	}
	if _, err := c.AddKey(NewKey{Name: "k", Privileges: []string{"read"}}, time.Now()); err == nil ||
		err.Error() != "unknown cluster privilege [read]; known: [monitor_inference,monitor_ml,manage_inference,manage_ml,monitor,manage,all]" {
		t.Errorf("unknown privilege: %v", err)
	}
	if _, err := c.AddUser(NewUser{Username: "u"}); err == nil {
		t.Error("a user without privileges was added")
	}
	if len(c.APIKeys) != 1 || len(c.Users) != 0 {
		t.Errorf("credentials %+v; want the one key created", c)
	}
}

// TestKeyIDsAreNotFlags: an id never starts with '-', so that
// "jetinfer auth invalidate-key ID" never reads it as a flag.
func TestKeyIDsAreNotFlags(t *testing.T) {
	var c Credentials
	for range 200 {
		k, err := c.AddKey(NewKey{Name: "k", Privileges: []string{"monitor"}, HashCost: bcrypt.MinCost}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(k.ID, "-") || len(k.ID) != 20 {
			t.Fatalf("id %q", k.ID)
		}
	}
}
