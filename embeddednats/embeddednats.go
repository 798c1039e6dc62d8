// Package embeddednats runs a nats-server with JetStream inside the jetinfer
// process: the single-machine default, and the server tests start. It owns
// the server's options, its readiness wait, its logging and its shutdown;
// it adds nothing to NATS itself.
package embeddednats

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// MaxPayload is the embedded server's largest message.
const MaxPayload = 8 << 20

// Config configures the embedded server.
type Config struct {
	// StoreDir holds JetStream's file store.
	StoreDir string
	// Listen is the client address (HOST:PORT, port 0 for a random one); an
	// empty Listen accepts in-process connections only.
	Listen string
	// ServerName names the server; JetStream clusters need unique names.
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept connections.
	ReadyTimeout time.Duration
	// ClusterName, ClusterListen (HOST:PORT) and Routes (nats-route://
	// URLs of every member) make the server one of a JetStream cluster.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// Accounts, when set, is nats-server configuration text of the
	// accounts, their users, exports and imports (and no_auth_user): then
	// only those users connect.
	Accounts string
	// MoveGlobalTo names the account that takes over the JetStream data of
	// the global account, from before the server had accounts (a
	// standalone server only: a cluster's metadata names the account).
	MoveGlobalTo string
	// TLS, when set, secures the client listener.
	TLS *tls.Config
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config, log zerolog.Logger) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats-server: store directory is required")
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	opts := &server.Options{}
	if cfg.Accounts != "" {
		if err := opts.ProcessConfigString(cfg.Accounts); err != nil {
			return nil, fmt.Errorf("embedded nats-server: accounts: %w", err)
		}
	}
	opts.ServerName = cfg.ServerName
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	opts.NoSigs = true // the jetinfer process owns signal handling
	// Documents and their chunked results are larger than NATS's 1 MB
	// default allows; 8 MB is the largest size NATS recommends.
	opts.MaxPayload = MaxPayload
	if cfg.MoveGlobalTo != "" && cfg.ClusterName == "" {
		if err := moveAccountData(cfg.StoreDir, server.DEFAULT_GLOBAL_ACCOUNT, cfg.MoveGlobalTo, log); err != nil {
			return nil, fmt.Errorf("embedded nats-server: %w", err)
		}
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = cfg.TLS, true, 2
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: listen address %q: %w", cfg.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: listen port %q: %w", portStr, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.ClusterName != "" {
		host, port, err := splitHostPort(cfg.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: cluster address %q: %w", cfg.ClusterListen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
		for _, r := range cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("embedded nats-server: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	logs := &logAdapter{log: log.With().Str("component", "nats-server").Logger()}
	srv.SetLoggerV2(logs, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		if msg := logs.fatal.Load(); msg != nil {
			return nil, fmt.Errorf("embedded nats-server: %s", *msg)
		}
		return nil, fmt.Errorf("embedded nats-server: not ready after %s", cfg.ReadyTimeout)
	}
	return &Server{srv: srv}, nil
}

// moveAccountData renames the JetStream directory of account from to that
// of account to, unless to has one already.
func moveAccountData(storeDir, from, to string, log zerolog.Logger) error {
	src, dst := filepath.Join(storeDir, server.JetStreamStoreDir, from), filepath.Join(storeDir, server.JetStreamStoreDir, to)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("move the JetStream data of account %s to %s: %w", from, to, err)
	}
	log.Info().Str("from", from).Str("to", to).Msg("JetStream data moved to the account that now holds it")
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	return host, port, err
}

// ClientURL returns the URL clients outside the process connect to, or ""
// when the server accepts in-process connections only.
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// ConnectOption makes nats.Connect use an in-process connection to s.
func (s *Server) ConnectOption() nats.Option {
	return nats.InProcessServer(s.srv)
}

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// logAdapter sends nats-server's log lines to zerolog, keeping the first
// fatal one: embedded, nats-server does not exit on it, so Start reports it.
type logAdapter struct {
	log   zerolog.Logger
	fatal atomic.Pointer[string]
}

func (l *logAdapter) Noticef(format string, v ...any) { l.log.Info().Msgf(format, v...) }
func (l *logAdapter) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.fatal.CompareAndSwap(nil, &msg)
	l.log.Error().Msg(msg)
}
func (l *logAdapter) Errorf(format string, v ...any) { l.log.Error().Msgf(format, v...) }
func (l *logAdapter) Debugf(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l *logAdapter) Tracef(format string, v ...any) { l.log.Trace().Msgf(format, v...) }
