// Package auth secures jetinfer's HTTP API as Elasticsearch's security does:
// it authenticates a request by its API key (ApiKey or Bearer), or basic-auth
// user, against an auth file that holds only bcrypt hashes and is reloaded
// when it changes, and authorizes it by Elasticsearch's cluster privileges
// (monitor_inference, manage_inference, …), answering with Elasticsearch's
// 401 and 403 security_exception texts and headers.
package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/jetinfer/jetinfer/eserror"
)

// GuardConfig configures a Guard.
type GuardConfig struct {
	// File is the auth file (see Credentials); required.
	File string
	// AnonymousRoot lets GET / answer without credentials.
	AnonymousRoot bool
	Log           zerolog.Logger
}

// Guard checks requests against the credentials of an auth file. It is
// safe for concurrent use.
type Guard struct {
	cfg GuardConfig
	log zerolog.Logger
	// macKey keys the digests of verified secrets: random per process, so
	// that memory holds nothing a secret could be recovered from offline.
	macKey []byte

	mu      sync.Mutex
	creds   Credentials
	file    os.FileInfo // the auth file as last read; nil if absent
	checked time.Time   // when the file was last looked at
	// verified maps a credential to the digest of the secret that last
	// verified against its bcrypt hash, and that hash: a client's requests
	// pay for bcrypt once, until the credential's hash changes.
	verified map[string]verifiedSecret
	// failed is the auth file as last seen unusable, so that it is
	// reported once, and read again when it changes.
	failed os.FileInfo
	// dummyHash is compared with for unknown users and key ids, so that
	// they cost what known ones do.
	dummyHash []byte
	// hashing bounds the bcrypt comparisons running at once: requests with
	// unknown secrets must not take every core.
	hashing chan struct{}

	hashChecks atomic.Int64
}

type verifiedSecret struct {
	hash   string
	digest [sha256.Size]byte
}

// reloadEvery bounds how often a request looks at the auth file.
const reloadEvery = time.Second

// NewGuard loads the auth file; it must be readable and valid.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.File == "" {
		return nil, fmt.Errorf("auth: an auth file is required")
	}
	g := &Guard{cfg: cfg, log: cfg.Log.With().Str("component", "auth").Logger(), macKey: make([]byte, 32), verified: map[string]verifiedSecret{},
		hashing: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))}
	if _, err := rand.Read(g.macKey); err != nil {
		return nil, err
	}
	var err error
	if g.dummyHash, err = hash(string(g.macKey), DefaultHashCost); err != nil {
		return nil, err
	}
	fi, err := os.Stat(cfg.File)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	if g.creds, err = LoadCredentials(cfg.File); err != nil {
		return nil, err
	}
	g.file, g.checked = fi, time.Now()
	return g, nil
}

// HashChecks counts the bcrypt verifications made: work a wrong secret
// costs, whatever its resemblance to the right one.
func (g *Guard) HashChecks() int64 { return g.hashChecks.Load() }

// refresh reloads the auth file when it changed, at most every
// reloadEvery, and returns the credentials in force.
func (g *Guard) refresh(now time.Time) Credentials {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.checked) < reloadEvery {
		return g.creds
	}
	g.checked = now
	fi, err := os.Stat(g.cfg.File)
	if err != nil {
		fi = nil
	}
	if sameFile(g.file, fi) || fi != nil && sameFile(g.failed, fi) {
		return g.creds
	}
	creds, err := LoadCredentials(g.cfg.File)
	if err != nil {
		// Looked at again once it changes; until then the credentials
		// loaded before stay in force.
		g.failed = fi
		g.log.Error().Err(err).Msg("auth file changed but cannot be used; keeping the credentials loaded before")
		return g.creds
	}
	g.file, g.failed = fi, nil
	if fi == nil {
		g.log.Warn().Str("file", g.cfg.File).Msg("auth file removed: every request is refused")
	}
	g.creds = creds
	g.log.Info().Int("api_keys", len(creds.APIKeys)).Int("users", len(creds.Users)).Msg("auth file reloaded")
	return g.creds
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// challenges are the WWW-Authenticate values of every 401, in
// Elasticsearch's order (realm, token service, API keys).
var challenges = []string{`Basic realm="security", charset="UTF-8"`, `Bearer realm="security"`, `ApiKey`}

// subject is who a request authenticated as.
type subject struct {
	privileges []string
	// describe is how 403 texts name it.
	describe string
}

// Check authenticates r and authorizes action for it: nil, or a 401 or 403
// *eserror.Error. An empty action only authenticates (a request that
// matches no route is answered only to those who authenticate).
func (g *Guard) Check(r *http.Request, action string) error {
	now := time.Now()
	creds := g.refresh(now)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	scheme, value, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	var sub subject
	var err *eserror.Error
	switch {
	case strings.EqualFold(scheme, "Basic") && value != "":
		sub, err = g.basic(creds, value, uri)
	case strings.EqualFold(scheme, "ApiKey") && value != "":
		sub, err = g.apiKey(creds, value, now)
	case strings.EqualFold(scheme, "Bearer") && value != "":
		// A Bearer token is an API key's encoded form, for clients (the
		// OpenAI SDKs) that send nothing else; why it failed is not told.
		if sub, err = g.apiKey(creds, value, now); err != nil {
			err = unsuccessful("oauth2 token: invalid token")
		}
	case g.cfg.AnonymousRoot && action == ActionMain:
		return nil
	default:
		err = unauthenticated("missing authentication credentials for REST request [%s]", uri)
	}
	if err != nil {
		return err
	}
	if action == "" || allows(sub.privileges, action) {
		return nil
	}
	return eserror.New(http.StatusForbidden, eserror.TypeSecurity, "action [%s] is unauthorized for %s, this action is granted by the cluster privileges [%s]",
		action, sub.describe, strings.Join(grantedBy(action), ","))
}

func unauthenticated(format string, args ...any) *eserror.Error {
	e := eserror.New(http.StatusUnauthorized, eserror.TypeSecurity, format, args...)
	e.Header = map[string][]string{"WWW-Authenticate": challenges}
	return e
}

// unsuccessful is the 401 of credentials that were read but did not
// authenticate, with why in additional_unsuccessful_credentials.
func unsuccessful(why string) *eserror.Error {
	e := unauthenticated("unable to authenticate with provided credentials and anonymous access is not allowed for this request")
	e.UnsuccessfulCredentials = []string{why}
	return e
}

func (g *Guard) basic(creds Credentials, value, uri string) (subject, *eserror.Error) {
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return subject{}, unauthenticated("invalid basic authentication header encoding")
	}
	username, password, ok := strings.Cut(string(raw), ":")
	if !ok || username == "" {
		return subject{}, unauthenticated("invalid basic authentication header value")
	}
	i := slices.IndexFunc(creds.Users, func(u User) bool { return u.Username == username })
	known := ""
	if i >= 0 {
		known = creds.Users[i].Hash
	}
	if !g.verify("user:"+username, known, password) {
		return subject{}, unauthenticated("unable to authenticate user [%s] for REST request [%s]", username, uri)
	}
	u := creds.Users[i]
	roles := slices.Sorted(slices.Values(u.Privileges))
	return subject{privileges: u.Privileges, describe: fmt.Sprintf("user [%s] with effective roles [%s]", u.Username, strings.Join(roles, ","))}, nil
}

func (g *Guard) apiKey(creds Credentials, value string, now time.Time) (subject, *eserror.Error) {
	const name = "API key" // Elasticsearch's authenticator name, prefixing its messages
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(value); err != nil { // padding is optional, as in Java's decoder
			return subject{}, unsuccessful(name + ": invalid ApiKey value")
		}
	}
	id, secret, ok := strings.Cut(string(raw), ":")
	if !ok || id == "" {
		return subject{}, unsuccessful(name + ": invalid ApiKey value")
	}
	i := slices.IndexFunc(creds.APIKeys, func(k APIKey) bool { return k.ID == id })
	if i < 0 {
		// Elasticsearch tells an unknown id apart in its message anyway;
		// the dummy comparison keeps the CPU cost of guessing the same.
		g.verify("key:"+id, "", secret)
		return subject{}, unsuccessful(fmt.Sprintf("%s: unable to find apikey with id %s", name, id))
	}
	k := creds.APIKeys[i]
	switch {
	case k.Invalidated:
		return subject{}, unsuccessful(fmt.Sprintf("%s: api key [%s] has been invalidated", name, id))
	case !g.verify("key:"+id, k.Hash, secret):
		return subject{}, unsuccessful(fmt.Sprintf("%s: invalid credentials for API key [%s]", name, id))
	case k.Expiration != nil && !now.Before(*k.Expiration):
		return subject{}, unsuccessful(name + ": api key is expired")
	}
	return subject{privileges: k.Privileges, describe: fmt.Sprintf("API key id [%s] of user [%s]", k.ID, k.Owner)}, nil
}

// verify checks secret against the bcrypt hash of credential key. A secret
// that verified against the same hash before is recognized by its digest,
// compared in constant time; any other costs a bcrypt comparison, itself
// constant-time, at most len(hashing) at once. An unknown credential
// (hash "") is compared with a dummy hash: it costs the same and fails.
func (g *Guard) verify(key, hash, secret string) bool {
	mac := hmac.New(sha256.New, g.macKey)
	mac.Write([]byte(key + "\x00" + secret))
	var digest [sha256.Size]byte
	mac.Sum(digest[:0])
	g.mu.Lock()
	known, ok := g.verified[key]
	g.mu.Unlock()
	if ok && hash != "" && known.hash == hash && subtle.ConstantTimeCompare(known.digest[:], digest[:]) == 1 {
		return true
	}
	against := []byte(hash)
	if hash == "" {
		against = g.dummyHash
	}
	g.hashing <- struct{}{}
	g.hashChecks.Add(1)
	err := bcrypt.CompareHashAndPassword(against, []byte(secret))
	<-g.hashing
	if err != nil || hash == "" {
		return false
	}
	g.mu.Lock()
	g.verified[key] = verifiedSecret{hash: hash, digest: digest}
	g.mu.Unlock()
	return true
}
