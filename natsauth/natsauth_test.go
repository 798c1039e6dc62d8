package natsauth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/wire"
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
	if opts, err := (ClientConfig{User: "u", Password: "p"}).Options(); err != nil || len(opts) != 1 {
		t.Errorf("user and password: %d options, %v", len(opts), err)
	}
}

// checkPublisherIsolation runs the publisher's whole allowance, and what it
// must not do, against a server with jetinfer's accounts at url.
func checkPublisherIsolation(t *testing.T, url string, own, pub Password) {
	t.Helper()
	ctx := context.Background()
	connect := func(p Password) (*nats.Conn, jetstream.JetStream) {
		t.Helper()
		nc, err := nats.Connect(url, nats.UserInfo(p.User, p.Password), nats.Timeout(10*time.Second))
		if err != nil {
			t.Fatalf("%s: %v", p.User, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	if nc, err := nats.Connect(url, nats.Timeout(10*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	ownNC, ownJS := connect(own)
	const token = "e"
	if _, err := wire.EnsureEndpoint(ctx, ownJS, token, wire.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	kv, err := ownJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("keep")); err != nil {
		t.Fatal(err)
	}

	pubNC, pubJS := connect(pub)
	results, err := pubNC.SubscribeSync(wire.ResultsSubject(token))
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := pubJS.Publish(ctx, wire.IngestSubject(token), []byte(`{"id":"d"}`)); err != nil || ack.Stream != wire.RequestsStream(token) {
		t.Fatalf("publisher publishes a document: %+v, %v", ack, err)
	}
	if err := pubNC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := ownNC.Publish(wire.ResultsSubject(token), []byte("result")); err != nil {
		t.Fatal(err)
	}
	if m, err := results.NextMsg(5 * time.Second); err != nil || string(m.Data) != "result" {
		t.Fatalf("publisher reads a result: %v", err)
	}
	// A reply subject of its choosing would have JetStream write the
	// acknowledgement there.
	abuse := nats.NewMsg(wire.IngestSubject(token))
	abuse.Reply = "$KV.victim.k"
	abuse.Data = []byte(`{"id":"x"}`)
	if err := pubNC.PublishMsg(abuse); err != nil {
		t.Fatal(err)
	}
	if err := pubNC.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "keep" {
		t.Errorf("after the publisher's reply subject: %v, %v; want keep", e, err)
	}
	kvCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := pubJS.KeyValue(kvCtx, "victim"); err == nil {
		t.Error("publisher opened a bucket")
	}
	if _, err := pubNC.Request(wire.InferSubject(token), []byte(`{"input":"x"}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("publisher called the infer subject: %v", err)
	}
}

func startServer(t *testing.T, accounts string) string {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Accounts: accounts}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// TestPublisherIsolation: the embedded server's accounts let the publisher
// in for documents and results only.
func TestPublisherIsolation(t *testing.T) {
	u, err := LoadOrCreateUsers(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	checkPublisherIsolation(t, startServer(t, ServerConfig(u, false)), u.Jetinfer, u.Publisher)
}

// TestComposeConfigIsolatesThePublisher: the NATS configuration
// docker-compose.yml uses gives the same guarantees.
func TestComposeConfigIsolatesThePublisher(t *testing.T) {
	t.Setenv("JETINFER_NATS_PASSWORD", "jetinfer-secret")
	t.Setenv("PUBLISHER_NATS_PASSWORD", "publisher-secret")
	conf, err := os.ReadFile(filepath.Join("..", "deploy", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "max_payload: 8MB") || embeddednats.MaxPayload != 8<<20 {
		t.Error("the compose configuration's max_payload is not the embedded server's")
	}
	checkPublisherIsolation(t, startServer(t, string(conf)),
		Password{User: UserJetinfer, Password: "jetinfer-secret"}, Password{User: UserPublisher, Password: "publisher-secret"})
}

// TestGlobalAccountDataMoves: the streams of a server from before accounts
// are found in jetinfer's account afterwards.
func TestGlobalAccountDataMoves(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	start := func(accounts, moveTo string) (*embeddednats.Server, jetstream.JetStream) {
		srv, err := embeddednats.Start(embeddednats.Config{StoreDir: dir, Accounts: accounts, MoveGlobalTo: moveTo}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect("", srv.ConnectOption(), nats.UserInfo(UserJetinfer, "pw"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return srv, js
	}
	old, js := start("", "")
	if _, err := wire.EnsureEndpoint(ctx, js, "e", wire.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, wire.IngestSubject("e"), []byte(`{"id":"queued"}`)); err != nil {
		t.Fatal(err)
	}
	old.Shutdown()
	u := Users{Jetinfer: Password{User: UserJetinfer, Password: "pw"}, Publisher: Password{User: UserPublisher, Password: "pp"}}
	srv, js := start(ServerConfig(u, false), Account)
	defer srv.Shutdown()
	s, err := js.Stream(ctx, wire.RequestsStream("e"))
	if err != nil || s.CachedInfo().State.Msgs != 1 {
		t.Fatalf("the queued document after the move: %v", err)
	}
}
