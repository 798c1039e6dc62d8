package node

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/modelsource"
	"github.com/jetinfer/jetinfer/natsauth"
	"github.com/jetinfer/jetinfer/tracing"
	"github.com/jetinfer/jetinfer/wire"
	"go.opentelemetry.io/otel/trace"
)

// Config holds the settings of one jetinfer process: its flags and
// JETINFER_* variables.
type Config struct {
	// HTTPAddr is where the Elasticsearch-compatible API listens.
	HTTPAddr string
	// MetricsAddr is where /metrics is served; empty serves none.
	MetricsAddr string
	// OTLPEndpoint, when set (else $OTEL_EXPORTER_OTLP_ENDPOINT), is the
	// OTLP/HTTP collector spans are exported to.
	OTLPEndpoint string
	// Tracer, when set, is used instead of an exporter to OTLPEndpoint
	// (tests give an in-memory one). Not a flag.
	Tracer trace.TracerProvider
	// AuthFile holds the API keys and users of the HTTP API (see package
	// auth); empty serves it without authentication, on loopback only
	// unless InsecureListen.
	AuthFile string
	// AnonymousRoot lets GET / answer without credentials.
	AnonymousRoot bool
	// InsecureListen lets the HTTP API without an auth file listen beyond
	// loopback.
	InsecureListen bool
	// TLSCert and TLSKey, PEM files, serve the HTTP API over TLS; they are
	// reloaded when they change.
	TLSCert, TLSKey string
	// DataDir holds the embedded nats-server's JetStream store.
	DataDir string
	// NATSURL names an external NATS server; empty runs an embedded one.
	NATSURL string
	// NATSListen is the embedded server's client address, so that the nats
	// CLI and other workers can reach it; "" disables client connections.
	NATSListen string
	// NATS authenticates to the external server and verifies it; its
	// TLSCert and TLSKey are the embedded server's certificate when jetinfer
	// runs one.
	NATS natsauth.ClientConfig
	// KVReplicas is the replication factor of jetinfer's buckets.
	KVReplicas int
	// MaxBodyBytes caps HTTP request bodies.
	MaxBodyBytes int64
	// ShutdownTimeout bounds the drain of in-flight work on shutdown.
	ShutdownTimeout time.Duration
	// NodeName names this process in logs and in GET /.
	NodeName string
	// ClusterName is reported by GET /.
	ClusterName string
	// WorkerOnly runs the worker without the HTTP API (jetinfer worker).
	WorkerOnly bool
	// Processors is the worker's processor budget; 0 means every core.
	Processors int
	// ModelRepository holds built-in models as <dir>/<model_id>/; a model
	// there is used instead of its source in the table. An http(s) URL is a
	// mirror in the same layout, the source of every built-in model.
	ModelRepository string
	// ModelSources overrides where built-in models come from.
	ModelSources modelsource.Overrides
	// Hub is where built-in models are downloaded from; DefaultConfig
	// reads huggingface_hub's variables (HF_ENDPOINT, HF_TOKEN, HF_HOME,
	// HF_HUB_CACHE, HF_HUB_OFFLINE).
	Hub hfhub.Config
	// ModelCacheDir keeps the models fetched from the model store; empty
	// means <data-dir>/models.
	ModelCacheDir string
	// QueueCapacity bounds the documents (and requests) waiting per
	// endpoint.
	QueueCapacity int
	// AckWait is how long a document may go unacknowledged before it is
	// delivered again (a worker keeps the documents it works on alive).
	AckWait time.Duration
	// Heartbeat paces the node registry, the controller lease and planning:
	// a node or controller that died is replaced after five of them.
	Heartbeat time.Duration
	// ScaleToZeroAfter is the idle time after which an adaptive endpoint
	// with no minimum loses its last allocation.
	ScaleToZeroAfter time.Duration
	// ScaleDownCooldown is how long after a scale-up no scale-down happens.
	ScaleDownCooldown time.Duration
	// ResultsMaxAge is how long results stay in the results stream.
	ResultsMaxAge time.Duration
	// LogLevel is a zerolog level name; LogFormat is json or console.
	LogLevel  string
	LogFormat string
}

// DefaultMetricsAddr serves /metrics on loopback: the metrics name the
// endpoints, and the port is not the API's, which needs credentials.
const DefaultMetricsAddr = "127.0.0.1:9464"

// EnvPrefix prefixes the environment variable of every flag:
// --http-addr is JETINFER_HTTP_ADDR.
const EnvPrefix = "JETINFER_"

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// DefaultConfig returns the settings of a single-machine deployment.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "jetinfer"
	}
	return Config{
		HTTPAddr:          ":9200",
		MetricsAddr:       DefaultMetricsAddr,
		DataDir:           "data",
		NATSListen:        "127.0.0.1:4222",
		KVReplicas:        1,
		MaxBodyBytes:      16 << 20,
		ShutdownTimeout:   30 * time.Second,
		NodeName:          host,
		ClusterName:       "jetinfer",
		ModelRepository:   "models",
		ModelSources:      modelsource.Overrides{},
		Hub:               hfhub.ConfigFromEnv(os.LookupEnv),
		OTLPEndpoint:      os.Getenv(tracing.EndpointEnv),
		QueueCapacity:     config.DefaultQueueCapacity,
		ResultsMaxAge:     24 * time.Hour,
		AckWait:           wire.DefaultAckWait,
		Heartbeat:         time.Second,
		ScaleToZeroAfter:  15 * time.Minute,
		ScaleDownCooldown: time.Minute,
		LogLevel:          "info",
		LogFormat:         "json",
	}
}

// RegisterFlags binds s's fields to flags on fs, each documented with its
// environment variable.
func (s *Config) RegisterFlags(fs *flag.FlagSet) {
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, *p, usage+" (env "+EnvName(name)+")")
	}
	str(&s.HTTPAddr, "http-addr", "`HOST:PORT` of the Elasticsearch-compatible HTTP API")
	str(&s.MetricsAddr, "metrics-addr", "`HOST:PORT` serving Prometheus metrics at /metrics; empty for none (each process of a machine needs its own)")
	fs.StringVar(&s.OTLPEndpoint, "otlp-endpoint", s.OTLPEndpoint, "`URL` of an OTLP/HTTP collector (http://collector:4318) that spans are exported to; empty exports none (env "+EnvName("otlp-endpoint")+" or "+tracing.EndpointEnv+")")
	str(&s.AuthFile, "auth-file", "`FILE` of API keys and users (bcrypt hashes) the HTTP API requires, reloaded when it changes; create one with jetinfer auth")
	fs.BoolVar(&s.AnonymousRoot, "auth-anonymous-root", s.AnonymousRoot, "with --auth-file, let GET / answer without credentials (env "+EnvName("auth-anonymous-root")+")")
	fs.BoolVar(&s.InsecureListen, "insecure-listen", s.InsecureListen, "without --auth-file, listen on --http-addr as given instead of loopback only (env "+EnvName("insecure-listen")+")")
	str(&s.TLSCert, "tls-cert", "PEM certificate `FILE` (chain) of the HTTP API; with --tls-key, serves HTTPS and reloads both when they change")
	str(&s.TLSKey, "tls-key", "PEM private key `FILE` of --tls-cert")
	str(&s.DataDir, "data-dir", "`DIR` for the embedded nats-server's JetStream data")
	str(&s.NATSURL, "nats-url", "`URL` of an external NATS server or cluster; empty runs an embedded nats-server")
	str(&s.NATSListen, "nats-listen", "`HOST:PORT` where the embedded nats-server accepts clients; empty accepts none")
	s.NATS.RegisterFlags(fs, EnvName)
	fs.IntVar(&s.KVReplicas, "kv-replicas", s.KVReplicas, "replicas of jetinfer's JetStream buckets (3 in a cluster) (env "+EnvName("kv-replicas")+")")
	fs.Int64Var(&s.MaxBodyBytes, "max-body-bytes", s.MaxBodyBytes, "largest HTTP request body accepted; larger ones get 413 (env "+EnvName("max-body-bytes")+")")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", s.ShutdownTimeout, "how long shutdown waits for in-flight work (env "+EnvName("shutdown-timeout")+")")
	str(&s.NodeName, "node-name", "name of this process in logs and GET /")
	str(&s.ClusterName, "cluster-name", "cluster name reported by GET /")
	fs.IntVar(&s.Processors, "processors", s.Processors, "processor budget of this worker: allocations × num_threads never exceed it; 0 means every core (env "+EnvName("processors")+")")
	str(&s.ModelRepository, "model-repository", "`DIR` or http(s) URL holding built-in models as <model_id>/model.onnx, tokenizer.json, ...; used instead of the Hub")
	fs.Var(s.ModelSources, "model-source", "where a built-in model comes from, `ID=SOURCE`[,...] with SOURCE hf://org/name[@revision][/file.onnx], an http(s) URL or a directory; repeatable (env "+EnvName("model-source")+")")
	str(&s.ModelCacheDir, "model-cache-dir", "`DIR` for models fetched from the model store (default <data-dir>/models)")
	fs.IntVar(&s.QueueCapacity, "queue-capacity", s.QueueCapacity, "documents (and requests) that may wait per endpoint; more are refused with 429 (env "+EnvName("queue-capacity")+")")
	fs.DurationVar(&s.AckWait, "ack-wait", s.AckWait, "how long a document of a worker that died waits before it is delivered again (env "+EnvName("ack-wait")+")")
	fs.DurationVar(&s.Heartbeat, "heartbeat", s.Heartbeat, "how often a worker announces itself and the controller plans; a worker or controller silent for 5 heartbeats is replaced (env "+EnvName("heartbeat")+")")
	fs.DurationVar(&s.ScaleToZeroAfter, "scale-to-zero-after", s.ScaleToZeroAfter, "idle time after which an adaptive endpoint with min_number_of_allocations 0 stops its last allocation (env "+EnvName("scale-to-zero-after")+")")
	fs.DurationVar(&s.ScaleDownCooldown, "scale-down-cooldown", s.ScaleDownCooldown, "how long after scaling up an adaptive endpoint is not scaled down (env "+EnvName("scale-down-cooldown")+")")
	fs.DurationVar(&s.ResultsMaxAge, "results-max-age", s.ResultsMaxAge, "how long results stay in an endpoint's results stream (env "+EnvName("results-max-age")+")")
	str(&s.LogLevel, "log-level", "log level: debug, info, warn, error")
	str(&s.LogFormat, "log-format", "log format: json or console")
}

// ApplyEnv sets every flag of fs whose environment variable is set, so that
// flags given on the command line (parsed afterwards) still win.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := lookup(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
			}
		}
	})
	return errors.Join(errs...)
}

// ListenAddr is where the HTTP API listens and, when that differs from
// HTTPAddr, why: without an auth file it listens on loopback only, unless
// InsecureListen.
func (s Config) ListenAddr() (addr, why string) {
	if s.AuthFile != "" || s.InsecureListen {
		return s.HTTPAddr, ""
	}
	host, port, err := net.SplitHostPort(s.HTTPAddr)
	if err != nil {
		return s.HTTPAddr, "" // net.Listen reports it
	}
	if isLoopback(host) {
		return s.HTTPAddr, ""
	}
	return net.JoinHostPort("127.0.0.1", port), "no --auth-file: the HTTP API listens on loopback only; create keys with jetinfer auth and pass --auth-file, or pass --insecure-listen to listen on " + s.HTTPAddr + " without authentication"
}

// isLoopback reports whether host names this machine only.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// EmbeddedNATSOpen reports whether the embedded server accepts clients
// without credentials: only while it listens on loopback (or not at all).
func (s Config) EmbeddedNATSOpen() bool {
	if s.NATSListen == "" {
		return true
	}
	host, _, err := net.SplitHostPort(s.NATSListen)
	return err == nil && isLoopback(host)
}

// Queue is what the endpoints' streams and consumers are created with.
func (s Config) Queue() wire.QueueConfig {
	return wire.QueueConfig{Replicas: s.KVReplicas, Capacity: int64(s.QueueCapacity), ResultsMaxAge: s.ResultsMaxAge, AckWait: s.AckWait}
}

// Validate reports settings that cannot work.
func (s Config) Validate() error {
	var errs []error
	if s.HTTPAddr == "" && !s.WorkerOnly {
		errs = append(errs, errors.New("--http-addr must not be empty"))
	}
	if _, err := s.NATS.Options(); err != nil {
		errs = append(errs, err)
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if s.NATSURL == "" && s.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty when the embedded nats-server runs"))
	}
	if s.KVReplicas < 1 || s.KVReplicas > 5 {
		errs = append(errs, fmt.Errorf("--kv-replicas must be between 1 and 5, got %d", s.KVReplicas))
	}
	if s.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("--max-body-bytes must be at least 1024, got %d", s.MaxBodyBytes))
	}
	if s.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	if s.Processors < 0 {
		errs = append(errs, fmt.Errorf("--processors must not be negative, got %d", s.Processors))
	}
	if s.QueueCapacity < 1 || s.QueueCapacity > config.MaxQueueCapacity {
		errs = append(errs, fmt.Errorf("--queue-capacity must be between 1 and %d, got %d", config.MaxQueueCapacity, s.QueueCapacity))
	}
	if s.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("--ack-wait must be at least 1s, got %s", s.AckWait))
	}
	// A document whose ack was lost comes back after the ack wait; its
	// result is dropped as a duplicate only within the window.
	if s.AckWait > wire.DuplicateWindow/2 {
		errs = append(errs, fmt.Errorf("--ack-wait must be at most %s, half the results' duplicate window, got %s", wire.DuplicateWindow/2, s.AckWait))
	}
	if s.Heartbeat < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--heartbeat must be at least 100ms, got %s", s.Heartbeat))
	}
	if s.ScaleToZeroAfter <= 0 || s.ScaleDownCooldown < 0 {
		errs = append(errs, errors.New("--scale-to-zero-after must be positive and --scale-down-cooldown not negative"))
	}
	if s.ResultsMaxAge < 2*time.Minute {
		// The results stream deduplicates over two minutes and JetStream
		// refuses a duplicate window longer than the stream's max age.
		errs = append(errs, fmt.Errorf("--results-max-age must be at least 2m, got %s", s.ResultsMaxAge))
	}
	if _, err := modelsource.NewTable(s.ModelSources); err != nil {
		errs = append(errs, fmt.Errorf("--model-source: %w", err))
	}
	if s.LogFormat != "json" && s.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("--log-format must be json or console, got %q", s.LogFormat))
	}
	return errors.Join(errs...)
}
