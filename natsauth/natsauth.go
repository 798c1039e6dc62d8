// Package natsauth secures jetinfer's NATS connections: the users of the
// embedded nats-server (jetinfer's own, and a publisher that may only
// publish documents and read results), generated once into the data
// directory, and the client options (credentials file, nkey, user and
// password, TLS) with which every jetinfer process connects.
package natsauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/wire"
)

// The users of the embedded server.
const (
	// UserJetinfer is jetinfer's own user: workers, the HTTP API, the CLI.
	UserJetinfer = "jetinfer"
	// UserPublisher may publish documents and read results, nothing else.
	UserPublisher = "publisher"
)

// The accounts of the embedded server. Account holds everything jetinfer
// keeps (streams, buckets, object store) and its user; PublisherAccount
// holds the publisher, which reaches Account only through what it exports:
// documents in (a service, so the server chooses the reply subject of the
// publish acknowledgement: a publisher that sets its own cannot make
// JetStream write the acknowledgement into a bucket) and results out (a
// stream). Nothing else of Account, its replies included, is visible.
const (
	Account          = "JETINFER"
	PublisherAccount = "PUBLISHERS"
)

// ServerConfig is the embedded server's accounts and users as nats-server
// configuration text; open lets clients without credentials in as
// jetinfer (for a server that listens on loopback only).
// deploy/nats-server.conf configures the same for docker-compose.yml.
func ServerConfig(u Users, open bool) string {
	ingest, results := wire.IngestSubject("*"), wire.ResultsSubject("*")
	conf := fmt.Sprintf(`accounts {
  %s: {
    jetstream: enabled
    users: [{user: %q, password: %q}]
    exports: [{service: %q}, {stream: %q}]
  }
  %s: {
    users: [{user: %q, password: %q}]
    imports: [{service: {account: %s, subject: %q}}, {stream: {account: %s, subject: %q}}]
  }
}
`, Account, u.Jetinfer.User, u.Jetinfer.Password, ingest, results,
		PublisherAccount, u.Publisher.User, u.Publisher.Password, Account, ingest, Account, results)
	if open {
		conf += fmt.Sprintf("no_auth_user: %q\n", u.Jetinfer.User)
	}
	return conf
}

// Password is one user's credentials.
type Password struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Users are the embedded server's users, kept in UsersFile.
type Users struct {
	Jetinfer  Password `json:"jetinfer"`
	Publisher Password `json:"publisher"`
}

// UsersFile is where the embedded server's users live in the data
// directory, mode 0600.
const UsersFile = "nats-users.json"

// LoadOrCreateUsers reads the users of the data directory dir, generating
// them with random passwords the first time.
func LoadOrCreateUsers(dir string) (Users, error) {
	path := filepath.Join(dir, UsersFile)
	var u Users
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &u); err != nil {
			return u, fmt.Errorf("%s: %w", path, err)
		}
		if u.Jetinfer.Password == "" || u.Publisher.Password == "" {
			return u, fmt.Errorf("%s: both users need a password", path)
		}
		return u, nil
	case !errors.Is(err, os.ErrNotExist):
		return u, err
	}
	u = Users{Jetinfer: Password{User: UserJetinfer}, Publisher: Password{User: UserPublisher}}
	for _, p := range []*Password{&u.Jetinfer, &u.Publisher} {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return u, err
		}
		p.Password = base64.RawURLEncoding.EncodeToString(b)
	}
	if data, err = json.MarshalIndent(u, "", "  "); err != nil {
		return u, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return u, err
	}
	// Written whole under another name, then linked into place: of two
	// processes starting on one directory, one file wins, and nobody
	// reads a half-written one.
	f, err := os.CreateTemp(dir, "."+UsersFile+".*")
	if err != nil {
		return u, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return u, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return u, err
	}
	if err := f.Close(); err != nil {
		return u, err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, os.ErrExist) {
		return LoadOrCreateUsers(dir)
	} else if err != nil {
		return u, err
	}
	return u, nil
}

// ClientConfig is how a jetinfer process authenticates to, and trusts, a
// NATS server it does not run.
type ClientConfig struct {
	// CredsFile is a NATS credentials file (JWT and nkey seed).
	CredsFile string
	// NKeySeedFile holds an nkey seed (SU…).
	NKeySeedFile   string
	User, Password string
	// TLSCA verifies the server's certificate; TLSCert and TLSKey are the
	// client's certificate, for servers that verify clients.
	TLSCA, TLSCert, TLSKey string
}

// RegisterFlags binds c to the --nats-* connection flags on fs, each
// documented with its environment variable (envName of the flag name).
func (c *ClientConfig) RegisterFlags(fs *flag.FlagSet, envName func(string) string) {
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, *p, usage+" (env "+envName(name)+")")
	}
	str(&c.CredsFile, "nats-creds", "credentials `FILE` for --nats-url")
	str(&c.NKeySeedFile, "nats-nkey", "nkey seed `FILE` for --nats-url")
	str(&c.User, "nats-user", "user for --nats-url (the embedded nats-server's are in <data-dir>/"+UsersFile+")")
	str(&c.Password, "nats-password", "password of --nats-user")
	str(&c.TLSCA, "nats-tls-ca", "PEM CA `FILE` that --nats-url's certificate must chain to")
	str(&c.TLSCert, "nats-tls-cert", "PEM certificate `FILE`: the embedded nats-server's (clients must then use TLS), or the client certificate for --nats-url")
	str(&c.TLSKey, "nats-tls-key", "PEM key `FILE` of --nats-tls-cert")
}

// Options are the nats.Connect options of c.
func (c ClientConfig) Options() ([]nats.Option, error) {
	var opts []nats.Option
	methods := 0
	if c.CredsFile != "" {
		methods++
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeySeedFile != "" {
		methods++
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if c.User != "" || c.Password != "" {
		methods++
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if methods > 1 {
		return nil, errors.New("nats: give one of a credentials file, an nkey seed, or a user and password")
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("nats: a TLS client certificate needs its key, and a key its certificate")
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}
