// Package node runs one jetinfer process: it connects to NATS (starting the
// embedded nats-server unless an external one is named), opens the endpoint
// bucket, serves the HTTP API and watches the endpoint definitions. It owns
// the start order, every goroutine it starts, and the shutdown order.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/embeddednats"
	"github.com/jetinfer/jetinfer/eserror"
	"github.com/jetinfer/jetinfer/httpapi"
	"github.com/jetinfer/jetinfer/pipeline"
)

// Node is a running jetinfer process.
type Node struct {
	cfg      config.Service
	log      zerolog.Logger
	embedded *embeddednats.Server
	nc       *nats.Conn
	ncClosed chan struct{}
	closing  atomic.Bool
	store    *config.Store
	http     *http.Server
	httpLn   net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   chan error
}

// Start brings a node up; it returns once the HTTP API accepts requests.
func Start(ctx context.Context, cfg config.Service, log zerolog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, errs: make(chan error, 1), ncClosed: make(chan struct{})}
	defer func() {
		if err != nil {
			n.closeNATS()
		}
	}()

	if err := n.connect(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	openCtx, cancelOpen := context.WithTimeout(ctx, 30*time.Second)
	defer cancelOpen()
	if n.store, err = config.OpenStore(openCtx, js, config.StoreConfig{Replicas: cfg.KVReplicas}); err != nil {
		return nil, err
	}
	if err := n.store.EnsureDefaults(openCtx); err != nil {
		return nil, fmt.Errorf("store default endpoints: %w", err)
	}

	api, err := httpapi.New(httpapi.Config{
		Store:        n.store,
		Inferer:      noDeployments{},
		MaxBodyBytes: cfg.MaxBodyBytes,
		NodeName:     cfg.NodeName,
		ClusterName:  cfg.ClusterName,
		ClusterUUID:  "_na_",
	}, log)
	if err != nil {
		return nil, err
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
	}
	n.http = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		// A client trickling a large body must not hold a handler forever.
		ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute,
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(n.httpLn); !errors.Is(err, http.ErrServerClosed) {
			n.fail(fmt.Errorf("http server: %w", err))
		}
	}()
	go func() {
		defer n.wg.Done()
		n.watchEndpoints(runCtx)
	}()
	log.Info().Str("http_addr", n.httpLn.Addr().String()).Str("nats_url", n.NATSURL()).Msg("jetinfer started")
	return n, nil
}

func (n *Node) connect() error {
	opts := []nats.Option{
		nats.Name("jetinfer " + n.cfg.NodeName),
		nats.MaxReconnects(-1),
		// Without a reconnect buffer a write during an outage fails at once;
		// with one, a PUT answered 503 could still be stored after reconnect.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when the node closes the connection itself
				n.log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
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
		srv, err := embeddednats.Start(embeddednats.Config{
			StoreDir:   filepath.Join(n.cfg.DataDir, "jetstream"),
			Listen:     n.cfg.NATSListen,
			ServerName: n.cfg.NodeName,
		}, n.log)
		if err != nil {
			return err
		}
		n.embedded = srv
		opts = append(opts, srv.ConnectOption())
	} else if n.cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(n.cfg.NATSCreds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	n.nc = nc
	return nil
}

// watchEndpoints follows the endpoint bucket until ctx ends. A watch that
// breaks (NATS gone, bucket deleted by hand) is logged and restarted: the
// HTTP API keeps answering, with 503s while the bucket is unreachable.
func (n *Node) watchEndpoints(ctx context.Context) {
	const retry = 2 * time.Second
	for {
		err := n.store.Watch(ctx, n.reportChange)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn().Err(err).Dur("retry_in", retry).Msg("endpoint watch stopped")
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// reportChange logs every definition that appears in the bucket, so that an
// invalid one written by another tool is visible the moment it lands.
func (n *Node) reportChange(c config.Change) {
	log := n.log.With().Str("inference_id", c.ID).Uint64("revision", c.Revision).Logger()
	switch {
	case c.Deleted:
		log.Info().Msg("endpoint definition removed")
	case c.Err != nil:
		log.Error().Err(c.Err).Msg("invalid endpoint definition in bucket " + config.Bucket)
	default:
		log.Info().Str("task_type", string(c.Endpoint.TaskType)).Str("model_id", c.Endpoint.ServiceSettings.ModelID).Msg("endpoint definition loaded")
	}
}

// HTTPAddr returns the address the HTTP API listens on.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

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
	err := n.http.Shutdown(ctx)
	if err != nil {
		// The drain ran out of time: cut the remaining requests before NATS
		// goes away under them.
		_ = n.http.Close()
	}
	n.cancel()
	n.wg.Wait()
	n.closeNATS()
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

// noDeployments answers inference requests until the inference engine is
// wired in: every endpoint is defined but none has a running deployment.
type noDeployments struct{}

func (noDeployments) Infer(_ context.Context, ep config.Endpoint, _ pipeline.Request) ([]byte, error) {
	return nil, eserror.New(http.StatusConflict, eserror.TypeStatus,
		"Inference endpoint [%s] has no running deployment: this jetinfer build cannot start model deployments yet", ep.InferenceID)
}
