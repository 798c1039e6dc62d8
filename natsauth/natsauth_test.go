package natsauth

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/jetinfer/jetinfer/embeddednats"
)

func TestUsersAreGeneratedOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadOrCreateUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.Jetinfer.User != UserJetinfer || first.Publisher.User != UserPublisher ||
		len(first.Jetinfer.Password) != 32 || first.Jetinfer.Password == first.Publisher.Password {
		t.Fatalf("generated %+v", first)
	}
	fi, err := os.Stat(filepath.Join(dir, UsersFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file %v (%v); want mode 600", fi, err)
	}
	again, err := LoadOrCreateUsers(dir)
	if err != nil || again != first {
		t.Errorf("second load %+v (%v); want the users generated first", again, err)
	}
}

func TestOneAuthenticationMethod(t *testing.T) {
	if _, err := (ClientConfig{User: "u", Password: "p", CredsFile: "x.creds"}).Options(); err == nil {
		t.Error("a credentials file and a password were both accepted")
	}
	if _, err := (ClientConfig{TLSCert: "c.pem"}).Options(); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
	if opts, err := (ClientConfig{User: "u", Password: "p"}).Options(); err != nil || len(opts) != 2 {
		t.Errorf("user and password: %d options, %v", len(opts), err)
	}
}

// TestComposeConfigGrantsThePublishersPermissions: the NATS configuration
// docker-compose.yml uses, read as nats-server reads it, gives the users the
// permissions the embedded server gives them, and the same payload limit.
func TestComposeConfigGrantsThePublishersPermissions(t *testing.T) {
	t.Setenv("JETINFER_NATS_PASSWORD", "j")
	t.Setenv("PUBLISHER_NATS_PASSWORD", "p")
	opts, err := server.ProcessConfigFile(filepath.Join("..", "deploy", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if opts.MaxPayload != embeddednats.MaxPayload {
		t.Errorf("max_payload %d; want %d", opts.MaxPayload, embeddednats.MaxPayload)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	own, pub := users[UserJetinfer], users[UserPublisher]
	if own == nil || pub == nil || own.Password != "j" || pub.Password != "p" || own.Permissions != nil {
		t.Fatalf("users %+v, %+v; want jetinfer unrestricted and publisher", own, pub)
	}
	if own.Account == nil || pub.Account == nil || own.Account.Name != "JETINFER" || pub.Account.Name != "JETINFER" {
		t.Errorf("accounts %v, %v; want both in JETINFER", own.Account, pub.Account)
	}
	p := pub.Permissions
	if p == nil || p.Publish == nil || p.Subscribe == nil || !slices.Equal(p.Publish.Allow, PublisherPublish) || !slices.Equal(p.Subscribe.Allow, PublisherSubscribe) ||
		len(p.Publish.Deny) != 0 || len(p.Subscribe.Deny) != 0 {
		t.Errorf("publisher permissions %+v; want publish %v, subscribe %v", p, PublisherPublish, PublisherSubscribe)
	}
}
