package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/modelsource"
	"github.com/jetinfer/jetinfer/modelstore"
	"github.com/jetinfer/jetinfer/natsauth"
	"github.com/jetinfer/jetinfer/node"
)

const modelUsage = `Usage:
  jetinfer model import DIR --model-id ID [--replace] [flags]   upload a model artifact directory
  jetinfer model import hf://ORG/NAME[@REVISION] --model-id ID [--file PATH] [--replace] [flags]
                                                                 download a Hugging Face Hub model and upload it
  jetinfer model quantize ID --model-id NEW_ID [--exclude NODE]... [--replace] [flags]
                                                                 store an int8 copy of a stored model (its
                                                                 constant-weight MatMuls; --exclude keeps a node
                                                                 or weight in float)
  jetinfer model list [flags]                                    list the stored models
  jetinfer model delete ID [flags]                               delete a stored model

Models live in the JetStream Object Store bucket ` + modelstore.Bucket + ` of the NATS server
at --nats-url (a running 'jetinfer serve' with its embedded server listens on nats://127.0.0.1:4222).
Hub downloads read HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE as huggingface_hub
does, and keep the files in its cache.
`

// defaultNATSURL is the embedded nats-server's default client address.
const defaultNATSURL = "nats://127.0.0.1:4222"

// model runs the model subcommands.
func model(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, modelUsage)
		return 2
	}
	switch args[0] {
	case "import", "list", "delete", "quantize":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, modelUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "jetinfer model: unknown command %q\n\n%s", args[0], modelUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("jetinfer model "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", defaultNATSURL, "`URL` of the NATS server or cluster (env "+node.EnvName("nats-url")+")")
	var client natsauth.ClientConfig
	client.RegisterFlags(fs, node.EnvName)
	var modelID, file string
	var replace bool
	var exclude stringList
	wantArgs := 1
	switch cmd {
	case "import", "quantize":
		fs.StringVar(&modelID, "model-id", "", "`ID` to store the model under (required)")
		fs.BoolVar(&replace, "replace", false, "replace a model already stored under the id")
		if cmd == "import" {
			fs.StringVar(&file, "file", "", "the ONNX `PATH` in a Hub repository (default onnx/model.onnx, else model.onnx, else the only .onnx file)")
		} else {
			fs.Var(&exclude, "exclude", "a MatMul node, or the weight it multiplies by, to keep in float (repeatable)")
		}
	case "list":
		wantArgs = 0
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\nFlags:\n", modelUsage)
		fs.PrintDefaults()
	}
	// Only the connection is shared with serve's environment; a stray
	// JETINFER_REPLACE or JETINFER_MODEL_ID must not change a command.
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(node.EnvName(f.Name)); ok && strings.HasPrefix(f.Name, "nats-") {
			_ = fs.Set(f.Name, v) // string flags accept any value
		}
	})
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(pos) != wantArgs {
		fmt.Fprintf(stderr, "jetinfer model %s: want %d argument(s), got %d\n\n%s", cmd, wantArgs, len(pos), modelUsage)
		return 2
	}
	if (cmd == "import" || cmd == "quantize") && modelID == "" {
		fmt.Fprintf(stderr, "jetinfer model %s: --model-id is required\n", cmd)
		return 2
	}

	var src modelsource.Source
	if cmd == "import" {
		if src, err = modelsource.Parse(pos[0]); err != nil {
			fmt.Fprintf(stderr, "jetinfer model import: %v\n", err)
			return 2
		}
		if file != "" {
			if src.Repo == "" {
				fmt.Fprintf(stderr, "jetinfer model import: --file applies to hf:// sources only\n")
				return 2
			}
			src.File = file
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, closeNATS, err := openModelStore(ctx, *natsURL, client)
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer model %s: %v\n", cmd, err)
		return 1
	}
	defer closeNATS()

	switch cmd {
	case "import":
		err = modelImport(ctx, store, modelsource.Request{ModelID: modelID, Source: src, Replace: replace}, stdout, stderr)
	case "quantize":
		err = modelQuantize(ctx, store, pos[0], modelID, quantize.Options{Exclude: exclude}, replace, stdout)
	case "list":
		err = modelList(ctx, store, stdout)
	case "delete":
		if err = store.Delete(ctx, pos[0]); err == nil {
			fmt.Fprintf(stdout, "deleted %s\n", pos[0])
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer model %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags that come before, between or after the
// positional arguments (the flag package stops at the first of those).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func openModelStore(ctx context.Context, url string, client natsauth.ClientConfig) (*modelstore.Store, func(), error) {
	copts, err := client.Options()
	if err != nil {
		return nil, nil, err
	}
	opts := append([]nats.Option{nats.Name("jetinfer model"), nats.Timeout(10 * time.Second)}, copts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := modelstore.Open(openCtx, js, modelstore.Config{})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return store, func() { _ = nc.Drain() }, nil
}

func modelImport(ctx context.Context, store *modelstore.Store, req modelsource.Request, stdout, stderr io.Writer) error {
	var hub *hfhub.Client
	if req.Source.Repo != "" {
		var err error
		if hub, err = hfhub.New(hfhub.ConfigFromEnv(os.LookupEnv)); err != nil {
			return err
		}
	}
	var bars []*progressBar
	if isTerminal(stderr) {
		download, upload := &progressBar{w: stderr, label: "download"}, &progressBar{w: stderr, label: "upload  "}
		bars = []*progressBar{download, upload}
		req.Downloaded = download.update
		req.Uploaded = func(done, total int64) {
			download.finish() // the download is over once the upload starts
			upload.update(done, total)
		}
	}
	m, err := modelsource.Import(ctx, store, hub, req)
	for _, b := range bars {
		b.finish()
	}
	if err != nil {
		return err
	}
	from := ""
	if m.Origin != nil {
		from = " from " + m.Origin.URI
	}
	fmt.Fprintf(stdout, "imported %s%s: %d files, %s, version %.12s\n", m.ModelID, from, len(m.Files), humanBytes(m.Size), m.Digest)
	return nil
}

// modelQuantize stores an int8 copy of the stored model source as modelID: its files as they are, its graph with
// the constant-weight MatMuls quantized (package quantize).
func modelQuantize(ctx context.Context, store *modelstore.Store, source, modelID string, opts quantize.Options, replace bool, stdout io.Writer) error {
	cache, err := os.MkdirTemp("", "jetinfer-quantize-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(cache) }()
	src, err := store.Fetch(ctx, source, filepath.Join(cache, "source"))
	if err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(src, artifact.ONNXFile))
	if err != nil {
		return err
	}
	graph, err := onnxgraph.Decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", artifact.ONNXFile, err)
	}
	report, err := quantize.Dynamic(graph, opts)
	if err != nil {
		return err
	}
	if len(report.Quantized) == 0 {
		return fmt.Errorf("%s has no MatMul with a constant float weight to quantize", source)
	}
	// The new artifact: the source's other files linked, the quantized graph written.
	staged := filepath.Join(cache, "staged")
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == artifact.ONNXFile {
			return err
		}
		if err := os.MkdirAll(filepath.Join(staged, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.Symlink(path, filepath.Join(staged, rel))
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(staged, artifact.ONNXFile), graph.Encode(), 0o644); err != nil {
		return err
	}
	m, err := store.Import(ctx, modelID, staged, modelstore.ImportOptions{Replace: replace})
	if err != nil {
		return err
	}
	floats := slices.Sorted(maps.Keys(report.Float))
	fmt.Fprintf(stdout, "quantized %s to int8 as %s: %d MatMuls in int8, %d in float", source, m.ModelID, len(report.Quantized), len(floats))
	for _, name := range floats {
		fmt.Fprintf(stdout, "\n  float: %s (%s)", name, report.Float[name])
	}
	fmt.Fprintf(stdout, "\nimported %s: %d files, %s, version %.12s\n", m.ModelID, len(m.Files), humanBytes(m.Size), m.Digest)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func modelList(ctx context.Context, store *modelstore.Store, stdout io.Writer) error {
	list, err := store.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL_ID\tFILES\tSIZE\tCREATED\tSOURCE")
	for _, m := range list {
		source := "-"
		if m.Origin != nil {
			source = m.Origin.URI
			if m.Origin.StandsIn != "" {
				source += " (stands in for " + m.Origin.StandsIn + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", m.ModelID, len(m.Files), humanBytes(m.Size), m.Created.UTC().Format(time.RFC3339), source)
	}
	return tw.Flush()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressBar draws one carriage-return line: a bar, bytes done/total and
// the percentage, at most every 100ms.
type progressBar struct {
	w     io.Writer
	label string
	last  time.Time
	drawn bool
	done  int64
	total int64
}

const barWidth = 30

func (p *progressBar) update(done, total int64) {
	p.done, p.total = done, total
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	p.draw()
}

func (p *progressBar) draw() {
	frac := 1.0
	if p.total > 0 {
		// A file whose size the listing did not give adds bytes beyond
		// the total.
		frac = min(max(float64(p.done)/float64(p.total), 0), 1)
	}
	filled := int(frac * barWidth)
	fmt.Fprintf(p.w, "\r%s [%s%s] %s / %s %3.0f%%  ", p.label, strings.Repeat("#", filled), strings.Repeat(" ", barWidth-filled),
		humanBytes(p.done), humanBytes(p.total), frac*100)
	p.drawn = true
}

func (p *progressBar) finish() {
	if p.drawn {
		p.draw()
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// humanBytes renders n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
