package node

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestServiceFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"JETINFER_HTTP_ADDR":        "127.0.0.1:9300",
		"JETINFER_NATS_URL":         "nats://from-env:4222",
		"JETINFER_SHUTDOWN_TIMEOUT": "5s",
		"JETINFER_KV_REPLICAS":      "3",
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	// A flag on the command line wins over the environment.
	if err := fs.Parse([]string{"--nats-url", "nats://from-flag:4222", "--data-dir", "/var/lib/jetinfer"}); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:9300" || cfg.NATSURL != "nats://from-flag:4222" || cfg.DataDir != "/var/lib/jetinfer" ||
		cfg.ShutdownTimeout != 5*time.Second || cfg.KVReplicas != 3 {
		t.Errorf("settings = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	for _, name := range []string{"-http-addr", "-data-dir", "-nats-url", "JETINFER_HTTP_ADDR", "JETINFER_NATS_LISTEN", "JETINFER_MAX_BODY_BYTES"} {
		if !strings.Contains(help.String(), name) {
			t.Errorf("help does not mention %s:\n%s", name, help.String())
		}
	}
}

func TestServiceEnvErrorsAndValidation(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err := ApplyEnv(fs, func(k string) (string, bool) {
		if k == "JETINFER_KV_REPLICAS" {
			return "three", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "JETINFER_KV_REPLICAS") {
		t.Errorf("ApplyEnv with a bad number = %v; want an error naming the variable", err)
	}
	bad := DefaultConfig()
	bad.KVReplicas, bad.LogFormat, bad.HTTPAddr, bad.AckWait = 7, "xml", "", 90*time.Second
	err = bad.Validate()
	for _, want := range []string{"--kv-replicas must be between 1 and 5, got 7", `--log-format must be json or console, got "xml"`, "--http-addr must not be empty",
		"--ack-wait must be at most 1m0s, half the results' duplicate window, got 1m30s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to contain %q", err, want)
		}
	}
}

func TestListenAddr(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cfg      Config
		want     string
		narrowed bool
	}{
		{"every interface without auth", Config{HTTPAddr: ":9200"}, "127.0.0.1:9200", true},
		{"0.0.0.0 without auth", Config{HTTPAddr: "0.0.0.0:9200"}, "127.0.0.1:9200", true},
		{"every IPv6 interface without auth", Config{HTTPAddr: "[::]:9200"}, "127.0.0.1:9200", true},
		{"a public address without auth", Config{HTTPAddr: "10.1.2.3:9200"}, "127.0.0.1:9200", true},
		{"loopback without auth", Config{HTTPAddr: "127.0.0.1:9300"}, "127.0.0.1:9300", false},
		{"localhost without auth", Config{HTTPAddr: "localhost:9300"}, "localhost:9300", false},
		{"IPv6 loopback without auth", Config{HTTPAddr: "[::1]:9200"}, "[::1]:9200", false},
		{"with an auth file", Config{HTTPAddr: ":9200", AuthFile: "auth.json"}, ":9200", false},
		{"insecure", Config{HTTPAddr: ":9200", InsecureListen: true}, ":9200", false},
	} {
		addr, why := tt.cfg.ListenAddr()
		if addr != tt.want || (why != "") != tt.narrowed {
			t.Errorf("%s: %q, %q; want %q, narrowed %v", tt.name, addr, why, tt.want, tt.narrowed)
		}
	}
}

func TestEmbeddedNATSOpen(t *testing.T) {
	for listen, want := range map[string]bool{
		"": true, "127.0.0.1:4222": true, "localhost:4222": true, "[::1]:4222": true,
		":4222": false, "0.0.0.0:4222": false, "[::]:4222": false, "10.0.0.5:4222": false, "no-port": false,
	} {
		if got := (Config{NATSListen: listen}).EmbeddedNATSOpen(); got != want {
			t.Errorf("--nats-listen %q: open %v; want %v", listen, got, want)
		}
	}
}
