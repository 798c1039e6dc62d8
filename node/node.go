// Package node runs one jetinfer process: it connects to NATS (starting the
// embedded nats-server unless an external one is named), opens the endpoint
// bucket, serves the HTTP API and watches the endpoint definitions. It owns
// the start order, every goroutine it starts, and the shutdown order.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/cluster"
	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/consumer"
	"github.com/jetinfer/jetinfer/controller"
	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/httpapi"
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/metrics"
	"github.com/jetinfer/jetinfer/modelsource"
	"github.com/jetinfer/jetinfer/modelstore"
	"github.com/jetinfer/jetinfer/natsauth"
	"github.com/jetinfer/jetinfer/tracing"
	"github.com/jetinfer/jetinfer/wire"
	"github.com/jetinfer/jetinfer/worker"
)

// Node is a running jetinfer process.
type Node struct {
	cfg         Config
	log         zerolog.Logger
	embedded    *embeddednats.Server
	nc          *nats.Conn
	ncClosed    chan struct{}
	closing     atomic.Bool
	store       *config.Store
	deployments *config.DeploymentStore
	worker      *worker.Worker

	controller     *controller.Controller
	stopController context.CancelFunc
	ctrlDone       chan struct{}
	http           *http.Server
	httpLn         net.Listener
	metrics        *metrics.Metrics
	metricsSrv     *http.Server
	metricsLn      net.Listener
	tracer         trace.TracerProvider
	stopTracing    func(context.Context) error

	wg   sync.WaitGroup
	errs chan error
}

// Start brings a node up; it returns once the HTTP API accepts requests.
// rt runs the models of the worker; without it the node serves the HTTP
// API only, and other processes' workers serve its requests.
func Start(ctx context.Context, cfg Config, rt *inference.Runtime, log zerolog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	guard, certs, err := httpSecurity(cfg, log)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, errs: make(chan error, 1), ncClosed: make(chan struct{}), metrics: metrics.New()}
	defer func() {
		if err != nil {
			// A start that failed half way stops what it started.
			n.stopWorker(context.Background())
			n.closeNATS()
			if n.metricsSrv != nil {
				_ = n.metricsSrv.Close()
			}
			if n.stopTracing != nil {
				_ = n.stopTracing(context.Background())
			}
		}
	}()
	if err := n.serveMetrics(); err != nil {
		return nil, err
	}
	n.tracer, n.stopTracing = cfg.Tracer, func(context.Context) error { return nil }
	if n.tracer == nil {
		if n.tracer, n.stopTracing, err = tracing.Setup(ctx, cfg.OTLPEndpoint, cfg.NodeName); err != nil {
			return nil, err
		}
	}

	if err := n.connect(); err != nil {
		return nil, err
	}
	// An async publish whose ack never comes (a stream leader lost it)
	// must not stay pending for ever: pending ones are bounded, and a full
	// set would stall every worker's results.
	js, err := jetstream.New(n.nc, jetstream.WithPublishAsyncTimeout(cfg.AckWait))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	openCtx, cancelOpen := context.WithTimeout(ctx, 30*time.Second)
	defer cancelOpen()
	buckets := config.StoreConfig{Replicas: cfg.KVReplicas, Log: n.log}
	if n.store, err = config.OpenStore(openCtx, js, buckets); err != nil {
		return nil, err
	}
	if n.deployments, err = config.OpenDeploymentStore(openCtx, js, buckets); err != nil {
		return nil, err
	}
	if err := n.store.EnsureDefaults(openCtx); err != nil {
		return nil, fmt.Errorf("store default endpoints: %w", err)
	}
	if err := n.migrateLegacyStreams(ctx, openCtx, js); err != nil {
		return nil, err
	}
	models, err := modelstore.Open(openCtx, js, modelstore.Config{Replicas: cfg.KVReplicas})
	if err != nil {
		return nil, err
	}
	states, err := cluster.OpenStates(openCtx, js, buckets)
	if err != nil {
		return nil, err
	}
	ttl := ttlHeartbeats * cfg.Heartbeat
	registry, err := cluster.OpenRegistry(openCtx, js, buckets, ttl)
	if err != nil {
		return nil, err
	}
	plans, err := cluster.OpenPlans(openCtx, js, buckets)
	if err != nil {
		return nil, err
	}
	downloads, err := cluster.OpenDownloads(openCtx, js, buckets, cfg.NodeName)
	if err != nil {
		return nil, err
	}
	view := cluster.View{Registry: registry, Plans: plans, States: states, Downloads: downloads}
	if rt != nil {
		if err := n.startWorker(ctx, openCtx, js, models, view, rt); err != nil {
			return nil, err
		}
	}
	if cfg.WorkerOnly {
		log.Info().Str("nats_url", n.NATSURL()).Msg("jetinfer worker started")
		return n, nil
	}

	api, err := httpapi.New(httpapi.Config{
		Store:         n.store,
		Inferer:       &wire.Client{NC: n.nc},
		QueueCapacity: cfg.QueueCapacity,
		Deployments:   view,
		Trained:       n.deployments,
		Stats:         view,
		Models: func(ctx context.Context) ([]httpapi.StoredModel, error) {
			ms, err := models.List(ctx)
			out := make([]httpapi.StoredModel, len(ms))
			for i, m := range ms {
				out[i].ID, out[i].Precision = m.ModelID, m.Precision
				if o := m.Origin; o != nil {
					out[i].Source, out[i].StandsIn = o.URI, o.StandsIn
				}
				if q := m.Quantized; q != nil {
					out[i].Quantized = &httpapi.Quantized{From: q.From, Agreement: q.Agreement, Forced: q.Forced}
				}
			}
			return out, err
		},
		ModelExists: func(ctx context.Context, id string) (bool, error) {
			_, err := models.Get(ctx, id)
			if errors.Is(err, modelstore.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		},
		MaxBodyBytes: cfg.MaxBodyBytes,
		NodeName:     cfg.NodeName,
		ClusterName:  cfg.ClusterName,
		ClusterUUID:  "_na_",
		Guard:        guard,
		Metrics:      n.metrics,
		Tracer:       n.tracer,
	}, log)
	if err != nil {
		return nil, err
	}
	addr, why := cfg.ListenAddr()
	switch {
	case why != "":
		log.Warn().Str("http_addr", addr).Msg(why)
	case cfg.AuthFile == "" && cfg.InsecureListen:
		log.Warn().Str("http_addr", addr).Msg("the HTTP API requires no authentication (--insecure-listen): anyone who reaches it can delete every endpoint")
	case cfg.AuthFile == "":
		log.Warn().Str("http_addr", addr).Msg("no --auth-file: the HTTP API requires no authentication, and listens on loopback only")
	}
	if n.httpLn, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	if certs != nil {
		n.httpLn = tls.NewListener(n.httpLn, certs.ServerConfig())
	}
	n.http = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		// A client trickling a large body must not hold a handler forever.
		ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute,
		// TLS handshake failures and the like, which net/http logs itself.
		ErrorLog: stdlog.New(warnWriter{log.With().Str("component", "http").Logger()}, "", 0),
	}

	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(n.httpLn); !errors.Is(err, http.ErrServerClosed) {
			n.fail(fmt.Errorf("http server: %w", err))
		}
	}()
	log.Info().Str("http_addr", n.httpLn.Addr().String()).Str("nats_url", n.NATSURL()).Msg("jetinfer started")
	return n, nil
}

// warnWriter logs each line written as a warning.
type warnWriter struct{ log zerolog.Logger }

func (w warnWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// httpSecurity loads what secures the HTTP API: the auth file's guard
// (nil without one) and the TLS key pair (nil without one).
func httpSecurity(cfg Config, log zerolog.Logger) (httpapi.Guard, *auth.Certificates, error) {
	if cfg.WorkerOnly {
		return nil, nil, nil
	}
	var guard httpapi.Guard
	if cfg.AuthFile != "" {
		g, err := auth.NewGuard(auth.GuardConfig{File: cfg.AuthFile, AnonymousRoot: cfg.AnonymousRoot, Log: log})
		if err != nil {
			return nil, nil, err
		}
		guard = g
	}
	var certs *auth.Certificates
	if cfg.TLSCert != "" {
		var err error
		if certs, err = auth.LoadCertificates(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return nil, nil, err
		}
	}
	return guard, certs, nil
}

// migrateLegacyStreams moves the documents and results of the streams
// every endpoint shared before each had its own into the endpoints' own
// streams (a no-op once done). It runs before this node serves anything;
// it copies message by message, so it has ctx rather than openCtx's bound.
func (n *Node) migrateLegacyStreams(ctx, openCtx context.Context, js jetstream.JetStream) error {
	entries, err := n.store.List(openCtx)
	if err != nil {
		return fmt.Errorf("list endpoints: %w", err)
	}
	deployments, err := n.deployments.List(openCtx)
	if err != nil {
		return fmt.Errorf("list deployments: %w", err)
	}
	// Trained model deployments are served as endpoints too.
	defined := make(map[string]bool, len(entries)+len(deployments))
	for _, e := range entries {
		defined[e.ID] = true
	}
	for _, d := range deployments {
		defined[d.Deployment.Endpoint().InferenceID] = true
	}
	return wire.MigrateLegacyStreams(ctx, js, wire.MigrationConfig{
		Queue: n.cfg.Queue(), Defined: func(id string) bool { return defined[id] }, Log: n.log,
	})
}

// Cluster timing, in heartbeats: a node and the controller lease outlive
// their last renewal by five of them.
const ttlHeartbeats = 5

// startWorker starts the worker and the controller it contends for.
func (n *Node) startWorker(ctx, openCtx context.Context, js jetstream.JetStream, models *modelstore.Store, view cluster.View, rt *inference.Runtime) error {
	cfg := n.cfg
	registry, plans, states := view.Registry, view.Plans, view.States
	lease, err := cluster.OpenLease(openCtx, js, config.StoreConfig{Replicas: cfg.KVReplicas, Log: n.log}, registry.TTL(), cfg.NodeName)
	if err != nil {
		return err
	}
	ctrl, err := controller.New(controller.Config{
		NC: n.nc, JS: js, Endpoints: n.store, Deployments: n.deployments, Registry: registry, Plans: plans, Lease: lease,
		Interval: cfg.Heartbeat, Queue: cfg.Queue(), Log: n.log,
		Scaling: controller.ScalerConfig{ScaleToZeroAfter: cfg.ScaleToZeroAfter, Cooldown: cfg.ScaleDownCooldown},
	})
	if err != nil {
		return err
	}
	cacheDir := cfg.ModelCacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(cfg.DataDir, "models")
	}
	sources, err := modelsource.NewTable(cfg.ModelSources)
	if err != nil {
		return err
	}
	hub, err := hfhub.New(cfg.Hub)
	if err != nil {
		return err
	}
	cache, err := worker.NewModelCache(worker.ModelCacheConfig{Runtime: rt, Store: models, Sources: sources,
		Repository: cfg.ModelRepository, Hub: hub, Downloads: view.Downloads, CacheDir: cacheDir, Metrics: n.metrics, Log: n.log})
	if err != nil {
		return err
	}
	giveBacks, err := wire.OpenGiveBacks(openCtx, js, cfg.KVReplicas, n.log)
	if err != nil {
		return err
	}
	n.worker, err = worker.Start(ctx, worker.Config{
		NC: n.nc, JS: js, Endpoints: n.store, Deployments: n.deployments, Models: cache, States: states, Registry: registry, Plans: plans,
		NodeName: cfg.NodeName, Processors: cfg.Processors, Heartbeat: cfg.Heartbeat,
		Deployment: consumer.DeploymentConfig{SearchCapacity: cfg.QueueCapacity, Queue: cfg.Queue(), GiveBacks: giveBacks, Tracer: n.tracer},
		Log:        n.log,
	})
	if err != nil {
		return err
	}
	if err := errors.Join(n.metrics.Register(n.worker), n.metrics.Register(cache), n.metrics.Register(ctrl)); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	ctrlCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.stopController = cancel
	n.controller = ctrl
	n.ctrlDone = make(chan struct{})
	go func() {
		defer close(n.ctrlDone)
		ctrl.Run(ctrlCtx)
	}()
	return nil
}

// stopWorker stops the controller, giving its lease up so that another
// worker plans at once, then the worker, whose deployments finish the
// documents and requests in hand.
func (n *Node) stopWorker(ctx context.Context) error {
	if n.controller != nil {
		n.stopController()
		<-n.ctrlDone
		n.controller = nil
	}
	if n.worker == nil {
		return nil
	}
	err := n.worker.Close(ctx)
	n.worker = nil
	return err
}

// Controller reports whether this node's worker is the controller.
func (n *Node) Controller() bool { return n.controller != nil && n.controller.Leader() }

func (n *Node) connect() error {
	opts := []nats.Option{
		nats.Name("jetinfer " + n.cfg.NodeName),
		nats.MaxReconnects(-1),
		// Without a reconnect buffer a write during an outage fails at once;
		// with one, a PUT answered 503 could still be stored after reconnect.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.metrics.NATSConnected.Set(0)
			if err != nil { // nil when the node closes the connection itself
				n.log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.metrics.NATSConnected.Set(1)
			n.metrics.NATSReconnects.Inc()
			n.log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		nats.ClosedHandler(func(c *nats.Conn) {
			close(n.ncClosed)
			if !n.closing.Load() {
				// nats.go gives up for good on some server errors (e.g. a
				// protocol violation); a node without NATS cannot serve.
				err := c.LastError()
				if err == nil {
					err = errors.New("closed by the server")
				}
				n.fail(fmt.Errorf("nats connection closed: %w", err))
			}
		}),
	}
	url := n.cfg.NATSURL
	if url == "" {
		srv, users, err := n.startEmbedded()
		if err != nil {
			return err
		}
		n.embedded = srv
		opts = append(opts, srv.ConnectOption(), nats.UserInfo(users.Jetinfer.User, users.Jetinfer.Password))
	} else {
		client, err := n.cfg.NATS.Options()
		if err != nil {
			return err
		}
		opts = append(opts, client...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	n.nc = nc
	n.metrics.NATSConnected.Set(1)
	return nil
}

// serveMetrics serves /metrics on --metrics-addr, a listener of its own so
// that scrapes need no API credentials and never reach the API.
func (n *Node) serveMetrics() error {
	if n.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if errors.Is(err, syscall.EADDRINUSE) && n.cfg.MetricsAddr == DefaultMetricsAddr {
		// A second process on the machine, started without its own
		// address: it runs, unscraped, rather than not at all.
		n.log.Warn().Str("metrics_addr", n.cfg.MetricsAddr).Msg("the default metrics address is taken (another jetinfer process on this machine?): no /metrics here; give this process its own --metrics-addr")
		return nil
	}
	if err != nil {
		return fmt.Errorf("metrics listen %s (give each process of a machine its own --metrics-addr, or empty for none): %w", n.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.Handler())
	n.metricsLn = ln
	n.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.metricsSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			n.fail(fmt.Errorf("metrics server: %w", err))
		}
	}()
	return nil
}

// MetricsAddr returns the address /metrics is served on ("" for none).
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr().String()
}

// startEmbedded starts the embedded nats-server with jetinfer's users
// (generated into the data directory the first time). Listening beyond
// loopback, it accepts only them.
func (n *Node) startEmbedded() (*embeddednats.Server, natsauth.Users, error) {
	users, err := natsauth.LoadOrCreateUsers(n.cfg.DataDir)
	if err != nil {
		return nil, users, fmt.Errorf("nats users: %w", err)
	}
	open := n.cfg.EmbeddedNATSOpen()
	cfg := embeddednats.Config{
		StoreDir:   filepath.Join(n.cfg.DataDir, "jetstream"),
		Listen:     n.cfg.NATSListen,
		ServerName: n.cfg.NodeName,
		// Local clients (the nats CLI, workers on this machine) connect
		// without credentials, as jetinfer, while the server listens on
		// loopback only.
		Accounts:     natsauth.ServerConfig(users, open),
		MoveGlobalTo: natsauth.Account,
	}
	if !open {
		n.log.Info().Str("nats_listen", n.cfg.NATSListen).Str("users", filepath.Join(n.cfg.DataDir, natsauth.UsersFile)).
			Msg("the embedded nats-server listens beyond loopback: clients must authenticate")
		if n.cfg.NATS.TLSCert == "" {
			n.log.Warn().Str("nats_listen", n.cfg.NATSListen).Msg("the embedded nats-server listens beyond loopback without TLS (--nats-tls-cert): passwords and documents cross the network in clear")
		}
	}
	if n.cfg.NATS.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(n.cfg.NATS.TLSCert, n.cfg.NATS.TLSKey)
		if err != nil {
			return nil, users, fmt.Errorf("nats tls: %w", err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	srv, err := embeddednats.Start(cfg, n.log)
	return srv, users, err
}

// Abort drops the node's NATS connection at once, as a crash would: no
// drain, no goodbye to the registry or the controller lease, no acks for
// the work in hand. The node is useless afterwards; Close still releases
// its resources. It exists for failure drills and tests.
func (n *Node) Abort() {
	n.closing.Store(true)
	n.nc.Close()
}

// HTTPAddr returns the address the HTTP API listens on ("" for a worker).
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// NATSURL returns the URL other processes reach this node's NATS at: the
// external server, or the embedded one's client URL ("" if it has none).
func (n *Node) NATSURL() string {
	if n.embedded != nil {
		return n.embedded.ClientURL()
	}
	return n.cfg.NATSURL
}

// Err delivers the first failure of a background task; the node should then
// be closed.
func (n *Node) Err() <-chan error { return n.errs }

// fail reports a background failure without blocking: the first one is
// what Err delivers.
func (n *Node) fail(err error) {
	select {
	case n.errs <- err:
	default:
	}
}

// Close shuts the node down: it stops accepting HTTP requests and lets those
// in flight finish (until ctx ends), stops watching, then closes NATS.
func (n *Node) Close(ctx context.Context) error {
	var err error
	if n.http != nil {
		if err = n.http.Shutdown(ctx); err != nil {
			// The drain ran out of time: cut the remaining requests before
			// NATS goes away under them.
			_ = n.http.Close()
		}
	}
	if n.metricsSrv != nil {
		_ = n.metricsSrv.Close()
	}
	n.wg.Wait()
	err = errors.Join(err, n.stopWorker(ctx))
	n.closeNATS()
	if n.stopTracing != nil {
		err = errors.Join(err, n.stopTracing(ctx))
	}
	n.log.Info().Msg("jetinfer stopped")
	return err
}

func (n *Node) closeNATS() {
	n.closing.Store(true)
	if n.nc != nil {
		// Drain delivers what subscriptions already received, then closes.
		if err := n.nc.Drain(); err != nil {
			n.nc.Close()
		}
		<-n.ncClosed
	}
	if n.embedded != nil {
		n.embedded.Shutdown()
	}
}
