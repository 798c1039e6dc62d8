package test

import (
	"context"
	"crypto/tls"
	"errors"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/natsauth"
	"github.com/jetinfer/jetinfer/node"
	"github.com/jetinfer/jetinfer/wire"
)

// TestEmbeddedNATSRefusesStrangers: an embedded nats-server listening beyond
// loopback, over TLS, refuses clients without credentials or without TLS;
// its generated publisher user publishes documents and reads their results
// but cannot read the buckets, call an endpoint's infer subject, see
// jetinfer's replies, or have a publish acknowledged into a bucket.
func TestEmbeddedNATSRefusesStrangers(t *testing.T) {
	var dataDir string
	ca := newTestCA(t)
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "nats.pem"), filepath.Join(certDir, "nats-key.pem")
	ca.issue(t, 7, certFile, keyFile)
	n := startNode(t, func(c *node.Config) {
		c.NATSListen = "0.0.0.0:0"
		c.NATS.TLSCert, c.NATS.TLSKey = certFile, keyFile
		dataDir = c.DataDir
	})
	secure := nats.Secure(&tls.Config{RootCAs: pool(t, ca.pem)})
	u, err := neturl.Parse(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	if err != nil {
		t.Fatal(err)
	}
	url := "tls://127.0.0.1:" + port
	if nc, err := nats.Connect(url, secure, nats.Timeout(10*time.Second)); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("a client without credentials: %v; want an authorization violation", err)
	}
	fi, err := os.Stat(filepath.Join(dataDir, natsauth.UsersFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file: %v, %v; want mode 600", fi, err)
	}
	users, err := natsauth.LoadOrCreateUsers(dataDir)
	if err != nil {
		t.Fatal(err)
	}

	n.do(t, "PUT", "/_inference/text_embedding/published?timeout=2m",
		`{"service":"elasticsearch","service_settings":{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1}}`).mustStatus(t, 200)
	token := config.Token("published")

	asyncErrs := make(chan string, 16)
	if nc, err := nats.Connect("nats://127.0.0.1:"+port, nats.UserInfo(users.Publisher.User, users.Publisher.Password), nats.Timeout(10*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without TLS connected")
	}
	pub, err := nats.Connect(url, secure, nats.UserInfo(users.Publisher.User, users.Publisher.Password), nats.Timeout(10*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case asyncErrs <- err.Error():
			default:
			}
		}))
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	defer pub.Close()
	inbox, err := pub.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	results, err := pub.SubscribeSync(wire.ResultsSubject(token))
	if err != nil {
		t.Fatal(err)
	}
	pjs, err := jetstream.New(pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := nats.NewMsg(wire.IngestSubject(token))
	msg.Header.Set("Nats-Msg-Id", "doc-1")
	msg.Data = []byte(`{"id":"doc-1","input":"published by the publisher"}`)
	if _, err := pjs.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publisher publishes a document: %v", err)
	}
	res, err := results.NextMsg(time.Minute)
	if err != nil {
		t.Fatalf("publisher reads the result: %v", err)
	}
	if got := res.Header.Get(wire.HeaderDocumentID); got != "doc-1" || !strings.HasPrefix(string(res.Data), `{"inference_id":"published","model_settings":{"service":"elasticsearch","task_type":"text_embedding"`) {
		t.Errorf("result %q for %q", res.Data, got)
	}
	// The acknowledgement of its publish came to its inbox; nothing else
	// (the node read its buckets meanwhile) did.
	n.do(t, "GET", "/_inference/published", "").mustStatus(t, 200)
	for range 100 { // ends at the first quiet half second
		m, err := inbox.NextMsg(500 * time.Millisecond)
		if err != nil {
			break
		}
		if !strings.Contains(string(m.Data), `"stream":"`+wire.RequestsStream(token)+`"`) {
			t.Errorf("publisher's inbox received %s %q", m.Subject, m.Data)
		}
	}

	// Its account sees nothing of jetinfer's but the documents it sends and
	// the results: no bucket, no infer subject, and a reply subject of its
	// choosing does not make JetStream write there.
	kvCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := pjs.KeyValue(kvCtx, config.Bucket); err == nil || !strings.Contains(err.Error(), "JetStream not enabled for account") {
		t.Errorf("publisher opens the endpoint bucket: %v", err)
	}
	if _, err := pub.Request(wire.InferSubject(token), []byte(`{"input":"x"}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("publisher calls the infer subject: %v; want no answer", err)
	}
	before := n.do(t, "GET", "/_inference/published", "")
	abuse := nats.NewMsg(wire.IngestSubject(token))
	abuse.Reply = "$KV." + config.Bucket + "." + token
	abuse.Header.Set("Nats-Msg-Id", "doc-2")
	abuse.Data = []byte(`{"id":"doc-2","input":"with a reply subject of the publisher's choosing"}`)
	if err := pub.PublishMsg(abuse); err != nil {
		t.Fatal(err)
	}
	if _, err := results.NextMsg(time.Minute); err != nil {
		t.Fatalf("the second document's result: %v", err)
	}
	if after := n.do(t, "GET", "/_inference/published", ""); after.status != 200 || after.body != before.body {
		t.Errorf("the definition after the publisher's reply subject: %d %s; want %s", after.status, after.body, before.body)
	}

	// jetinfer's own user reaches everything, from another process's view.
	own, err := nats.Connect(url, secure, nats.UserInfo(users.Jetinfer.User, users.Jetinfer.Password), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("jetinfer user: %v", err)
	}
	defer own.Close()
	ojs, err := jetstream.New(own)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := ojs.KeyValue(ctx, config.Bucket)
	if err != nil {
		t.Fatalf("jetinfer user opens the endpoint bucket: %v", err)
	}
	if _, err := kv.Get(ctx, "published"); err != nil {
		t.Errorf("jetinfer user reads a definition: %v", err)
	}
}

// TestEmbeddedNATSOnLoopbackStaysOpen: listening on loopback, the embedded
// server lets local clients in without credentials, as jetinfer's user.
func TestEmbeddedNATSOnLoopbackStaysOpen(t *testing.T) {
	n := startNodeWith(t, nil, nil)
	nc, err := nats.Connect(n.NATSURL(), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("a local client without credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.KeyValue(context.Background(), config.Bucket); err != nil {
		t.Errorf("the local client opens the endpoint bucket: %v", err)
	}
}
