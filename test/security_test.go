package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v9"
	"github.com/elastic/go-elasticsearch/v9/typedapi/inference/put"
	"github.com/elastic/go-elasticsearch/v9/typedapi/types"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/node"
)

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jetinfer test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a server certificate for 127.0.0.1 with the given serial
// and its key to certFile and keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "jetinfer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: a handshake between the two writes still loads a
	// matching pair (the old one).
	if err := os.WriteFile(keyFile+".new", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile+".new", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keyFile+".new", keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(certFile+".new", certFile); err != nil {
		t.Fatal(err)
	}
}

// esStatus is the status and reason of a typed client's error.
func esStatus(err error) (int, string) {
	var e *types.ElasticsearchError
	if errors.As(err, &e) && e.ErrorCause.Reason != nil {
		return e.Status, e.ErrorCause.Type + ": " + *e.ErrorCause.Reason
	}
	return 0, ""
}

// TestSecuredAPIWithOfficialClient: a node with an auth file and TLS, driven
// by Elastic's Go client with an API key, with basic auth, and without
// credentials; keys invalidated, added and certificates renewed while it
// runs.
func TestSecuredAPIWithOfficialClient(t *testing.T) {
	dir := t.TempDir()
	authFile, certFile, keyFile := filepath.Join(dir, "auth.json"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var creds auth.Credentials
	now := time.Now()
	admin, err := creds.AddKey(auth.NewKey{Name: "admin", Owner: "ops", Privileges: []string{"manage_inference", "monitor"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	searcher, err := creds.AddKey(auth.NewKey{Name: "searcher", Owner: "ops", Privileges: []string{"monitor_inference"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	password, err := creds.AddUser(auth.NewUser{Username: "bob", Privileges: []string{"monitor_inference"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.Save(authFile); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	ca.issue(t, 100, certFile, keyFile)
	n := startNode(t, func(c *node.Config) {
		c.HTTPAddr = "0.0.0.0:0" // an auth file allows listening beyond loopback
		c.AuthFile, c.TLSCert, c.TLSKey = authFile, certFile, keyFile
	})
	_, port, err := net.SplitHostPort(n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(n.HTTPAddr()); host == "127.0.0.1" {
		t.Errorf("with an auth file the API listens on %s; want every interface", n.HTTPAddr())
	}
	base := "https://127.0.0.1:" + port
	client := func(opts ...elasticsearch.Option) *elasticsearch.TypedClient {
		t.Helper()
		es, err := elasticsearch.NewTyped(append([]elasticsearch.Option{elasticsearch.WithAddresses(base), elasticsearch.WithCACert(ca.pem)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	ctx := context.Background()

	adminES := client(elasticsearch.WithAPIKey(admin.Encoded))
	if info, err := adminES.Info().Do(ctx); err != nil || info.Tagline != "You Know, for Search" {
		t.Fatalf("Info with an API key over TLS: %+v, %v", info, err)
	}
	if _, err := adminES.Inference.Put("secured").TaskType("text_embedding").Request(&put.Request{
		Service:         "elasticsearch",
		ServiceSettings: json.RawMessage(`{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1}`),
	}).Do(ctx); err != nil {
		t.Fatalf("Inference.Put with manage_inference: %v", err)
	}

	searchES := client(elasticsearch.WithAPIKey(searcher.Encoded))
	res, err := searchES.Inference.TextEmbedding("secured").Input("a search").Do(ctx)
	if err != nil || len(res.TextEmbedding) != 1 || len(res.TextEmbedding[0].Embedding) == 0 {
		t.Fatalf("TextEmbedding with monitor_inference: %+v, %v", res, err)
	}
	_, err = searchES.Inference.Put("not-allowed").TaskType("text_embedding").Request(&put.Request{
		Service:         "elasticsearch",
		ServiceSettings: json.RawMessage(`{"model_id":".multilingual-e5-small","num_allocations":1,"num_threads":1}`),
	}).Do(ctx)
	if status, reason := esStatus(err); status != 403 || reason != "security_exception: action [cluster:admin/xpack/inference/put] is unauthorized for API key id ["+
		searcher.ID+"] of user [ops], this action is granted by the cluster privileges [manage_inference,manage,all]" {
		t.Errorf("Put with monitor_inference: %d %q (%v)", status, reason, err)
	}
	_, err = searchES.Inference.Delete("secured").Do(ctx)
	if status, _ := esStatus(err); status != 403 {
		t.Errorf("Delete with monitor_inference: %d (%v)", status, err)
	}

	bobES := client(elasticsearch.WithBasicAuth("bob", password))
	if got, err := bobES.Inference.Get().InferenceId("secured").Do(ctx); err != nil || len(got.Endpoints) != 1 {
		t.Errorf("Get with basic auth: %+v, %v", got, err)
	}
	_, err = client(elasticsearch.WithBasicAuth("bob", "wrong")).Inference.Get().Do(ctx)
	if status, reason := esStatus(err); status != 401 || reason != "security_exception: unable to authenticate user [bob] for REST request [/_inference]" {
		t.Errorf("Get with a wrong password: %d %q (%v)", status, reason, err)
	}
	_, err = client().Inference.Get().Do(ctx)
	if status, reason := esStatus(err); status != 401 || reason != "security_exception: missing authentication credentials for REST request [/_inference]" {
		t.Errorf("Get without credentials: %d %q (%v)", status, reason, err)
	}

	// The OpenAI route takes the same API key as its bearer token, and
	// answers a wrong one in OpenAI's envelope.
	openAIClient := func(key string) *openai.Client {
		c := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0),
			option.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, ca.pem)}}, Timeout: 30 * time.Second}))
		return &c
	}
	emb, err := openAIClient(searcher.Encoded).Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "secured",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("a search")}})
	if err != nil || len(emb.Data) != 1 || len(emb.Data[0].Embedding) != len(res.TextEmbedding[0].Embedding) {
		t.Fatalf("OpenAI embeddings with the searcher's key: %+v, %v", emb, err)
	}
	_, err = openAIClient("bm90LWE6a2V5").Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "secured",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("a search")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" || apiErr.Type != "invalid_request_error" ||
		apiErr.Message != "unable to authenticate with provided credentials and anonymous access is not allowed for this request" {
		t.Errorf("OpenAI embeddings with an unknown key: %v (%s)", err, apiErr.RawJSON())
	}

	// The raw answer: WWW-Authenticate lines, no product header.
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, ca.pem)}}, Timeout: 30 * time.Second}

	// The TEI routes take the same key, and answer without one in TEI's body.
	for _, c := range []struct {
		auth   string
		status int
		body   string
	}{
		{"ApiKey " + searcher.Encoded, 200, ""},
		{"", 401, `{"error":"missing authentication credentials for REST request [/tei/secured/embed]","error_type":"Validation"}`},
	} {
		req, err := http.NewRequest("POST", base+"/tei/secured/embed", strings.NewReader(`{"inputs":"a search"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var vecs [][]float32
		if resp.StatusCode != c.status || c.body != "" && string(body) != c.body ||
			c.body == "" && (json.Unmarshal(body, &vecs) != nil || len(vecs) != 1 || len(vecs[0]) != len(res.TextEmbedding[0].Embedding)) {
			t.Errorf("TEI embed with %q: %d %s; want %d %s", c.auth, resp.StatusCode, body, c.status, c.body)
		}
	}
	resp, err := httpClient.Get(base + "/_inference/_all")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != 401 || strings.Join(got, "|") != `Basic realm="security", charset="UTF-8"|Bearer realm="security"|ApiKey` ||
		resp.Header.Get("X-Elastic-Product") != "" {
		t.Errorf("401 headers: %d %v", resp.StatusCode, resp.Header)
	}
	// Unknown paths and methods are not told apart without credentials.
	for _, probe := range []struct{ method, path string }{{"GET", "/_nope"}, {"DELETE", "/"}, {"HEAD", "/_inference"}} {
		req, err := http.NewRequest(probe.method, base+probe.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("Allow") != "" {
			t.Errorf("%s %s without credentials: %d %v; want 401", probe.method, probe.path, resp.StatusCode, resp.Header)
		}
	}
	// A client that does not trust the CA, or speaks plain HTTP, gets nowhere.
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/"); err == nil {
		t.Error("a client without the CA completed a TLS handshake")
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + "/"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was answered 200 on the TLS port")
	}

	// Invalidate the admin key and add one: both apply without a restart.
	creds, err = auth.LoadCredentials(authFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := creds.InvalidateKey(admin.ID); err != nil {
		t.Fatal(err)
	}
	added, err := creds.AddKey(auth.NewKey{Name: "added", Privileges: []string{"monitor"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.Save(authFile); err != nil {
		t.Fatal(err)
	}
	var status int
	var reason string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, err = adminES.Info().Do(ctx)
		if status, reason = esStatus(err); status == 401 {
			break
		}
	}
	if status != 401 || reason != "security_exception: unable to authenticate with provided credentials and anonymous access is not allowed for this request" {
		t.Errorf("the invalidated key: %d %q (%v)", status, reason, err)
	}
	if _, err := client(elasticsearch.WithAPIKey(added.Encoded)).Info().Do(ctx); err != nil {
		t.Errorf("the key added while running: %v", err)
	}

	// A renewed certificate is served to new connections without a restart.
	ca.issue(t, 200, certFile, keyFile)
	var serial int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && serial != 200; time.Sleep(100 * time.Millisecond) {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{RootCAs: pool(t, ca.pem)})
		if err != nil {
			t.Fatal(err)
		}
		serial = conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		conn.Close()
	}
	if serial != 200 {
		t.Errorf("certificate served after renewal: serial %d; want 200", serial)
	}
}

func pool(t *testing.T, caPEM []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA does not parse")
	}
	return p
}

// TestNoAuthFileListensOnLoopback: without an auth file the API listens on
// loopback only, whatever --http-addr asks, unless --insecure-listen.
func TestNoAuthFileListensOnLoopback(t *testing.T) {
	n := startNodeWith(t, func(c *node.Config) { c.HTTPAddr = "0.0.0.0:0" }, nil)
	if host, _, _ := net.SplitHostPort(n.HTTPAddr()); host != "127.0.0.1" {
		t.Errorf("without an auth file the API listens on %s; want 127.0.0.1", n.HTTPAddr())
	}
	insecure := startNodeWith(t, func(c *node.Config) { c.HTTPAddr, c.InsecureListen = "0.0.0.0:0", true }, nil)
	if host, _, _ := net.SplitHostPort(insecure.HTTPAddr()); host == "127.0.0.1" {
		t.Errorf("with --insecure-listen the API listens on %s; want every interface", insecure.HTTPAddr())
	}
}
