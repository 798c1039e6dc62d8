// Command jetinfer is the jetinfer service: Elasticsearch's _inference API
// for the elasticsearch service, on NATS JetStream.
//
//	jetinfer serve [flags]   run the service (embedded NATS by default)
//	jetinfer worker [flags]  run a worker only, on a shared NATS (--nats-url)
//	jetinfer model ...       import, list and delete stored model artifacts
//	jetinfer auth ...        create API keys and users of the HTTP API
//
// Every flag can also be set with an environment variable, JETINFER_ plus the
// flag name in upper case with '-' as '_' (--http-addr: JETINFER_HTTP_ADDR).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/ortlib"
	"github.com/jetinfer/jetinfer/node"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `jetinfer: Elasticsearch-compatible inference endpoints on NATS JetStream

Usage:
  jetinfer serve [flags]    run the service: HTTP API on :9200, embedded NATS
  jetinfer worker [flags]   run a worker only (no HTTP API) on --nats-url
  jetinfer model import DIR --model-id ID | list | delete ID
                            manage the model artifacts stored in NATS
  jetinfer auth create-key | invalidate-key ID | add-user | list
                            manage the API keys and users of --auth-file
  jetinfer help [command]   show help

Run 'jetinfer serve --help', 'jetinfer model help' or 'jetinfer auth help' for the flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr, false)
	case "worker":
		return serve(args[1:], stdout, stderr, true)
	case "model":
		return model(args[1:], stdout, stderr)
	case "auth":
		return authCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		if len(args) > 1 && (args[1] == "serve" || args[1] == "worker") {
			return serve([]string{"--help"}, stdout, stderr, args[1] == "worker")
		}
		if len(args) > 1 && args[1] == "model" {
			return model([]string{"help"}, stdout, stderr)
		}
		if len(args) > 1 && args[1] == "auth" {
			return authCmd([]string{"help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "jetinfer: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func serve(args []string, stdout, stderr io.Writer, workerOnly bool) int {
	cfg := node.DefaultConfig()
	cfg.WorkerOnly = workerOnly
	name := "serve"
	about := "Runs the HTTP API and the worker and, unless --nats-url is given, an embedded nats-server."
	if workerOnly {
		name = "worker"
		about = "Runs a worker only: it serves the endpoints stored in the NATS server given by --nats-url."
	}
	fs := flag.NewFlagSet("jetinfer "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	ortLib := fs.String("onnxruntime-lib", "", "ONNX Runtime shared `FILE` (default: $"+ortlib.LibraryEnv+", beside the executable, "+ortlib.CacheDir(os.LookupEnv)+", the system library path)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jetinfer %s [flags]\n\n%s\n\nFlags:\n", name, about)
		fs.PrintDefaults()
	}
	if err := node.ApplyEnv(fs, os.LookupEnv); err != nil {
		fmt.Fprintf(stderr, "jetinfer: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "jetinfer: %v\n", err)
		return 2
	}
	if workerOnly && cfg.NATSURL == "" {
		fmt.Fprintln(stderr, "jetinfer: worker needs --nats-url: the NATS server that jetinfer serve or a cluster runs")
		return 2
	}
	log, err := newLogger(cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lib, err := ortlib.Find(ortlib.DefaultPlaces(*ortLib))
	var rt *inference.Runtime
	if err == nil {
		rt, err = inference.NewRuntime(inference.RuntimeConfig{LibraryPath: lib})
	}
	if err != nil {
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	// ONNX Runtime goes last, and only after a complete shutdown: a model
	// still loading or running must not find it gone.
	closeRuntime := false
	defer func() {
		if !closeRuntime {
			return
		}
		if err := rt.Close(); err != nil {
			log.Warn().Err(err).Msg("close onnx runtime")
		}
	}()
	n, err := node.Start(ctx, cfg, rt, log)
	if err != nil {
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case err := <-n.Err():
		log.Error().Err(err).Msg("shutting down after failure")
		code = 1
	}
	stop() // a second signal now ends the process at once

	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := n.Close(shutdownCtx); err != nil {
		log.Error().Err(err).Msg("shutdown incomplete")
		code = 1
	} else {
		closeRuntime = true
	}
	return code
}

func newLogger(cfg node.Config, out io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("--log-level: %w", err)
	}
	if cfg.LogFormat == "console" {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.RFC3339}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Str("node", cfg.NodeName).Logger(), nil
}
