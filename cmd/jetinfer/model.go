package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/ortlib"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/modelquant"
	"github.com/jetinfer/jetinfer/modelsource"
	"github.com/jetinfer/jetinfer/modelstore"
	"github.com/jetinfer/jetinfer/natsauth"
	"github.com/jetinfer/jetinfer/node"
)

const modelUsage = `Usage:
  jetinfer model import DIR --model-id ID [--replace] [--quantize int8] [flags]
                                                                 upload a model artifact directory
  jetinfer model import hf://ORG/NAME[@REVISION] --model-id ID [--file PATH] [--replace] [--quantize int8] [flags]
                                                                 download a Hugging Face Hub model and upload it
  jetinfer model quantize ID --model-id NEW_ID [--exclude NODE]... [--fuse=auto|true|false] [--force] [--replace] [flags]
                                                                 store an int8 copy of a stored model
  jetinfer model list [flags]                                    list the stored models
  jetinfer model delete ID [flags]                               delete a stored model

--quantize int8 (on import) and quantize make the constant-weight MatMuls int8 and check the
int8 model against the float one on 50 fixed texts: dense embeddings' lowest cosine >= 0.99,
sparse embeddings' top-20 term overlap >= 0.9, rerank scores' Spearman correlation >= 0.98.
A model beyond its bound is refused with the figure unless --force; --exclude keeps a MatMul
node, or the weight it multiplies by, in float. Attention and the layer normalizations after
residual connections are first fused into ONNX Runtime's operators (faster on two threads); with
the default --fuse=auto the copy is made again without fusions when the fused one strays beyond
its bound, fails, or an excluded node is one they absorb; --fuse=true keeps them,
--fuse=false skips them.

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
	var modelID, file, precision, ortLib string
	var replace, force bool
	var fusion fusionFlag
	var exclude stringList
	wantArgs := 1
	switch cmd {
	case "import", "quantize":
		fs.StringVar(&modelID, "model-id", "", "`ID` to store the model under (required)")
		fs.BoolVar(&replace, "replace", false, "replace a model already stored under the id")
		if cmd == "import" {
			fs.StringVar(&file, "file", "", "the ONNX `PATH` in a Hub repository (default onnx/model.onnx, else model.onnx, else the only .onnx file)")
			fs.StringVar(&precision, "quantize", "", "store the model quantized: int8")
		}
		fs.Var(&exclude, "exclude", "a MatMul node, or the weight it multiplies by, to keep in float (repeatable)")
		fs.BoolVar(&force, "force", false, "store an int8 model although it strays beyond its accuracy bound")
		fs.Var(&fusion, "fuse", "fuse attention and skip layer normalization into ONNX Runtime's operators before quantizing: auto (dropped when they stand in the way of the bound or an --exclude), true or false (default auto)")
		fs.StringVar(&ortLib, "onnxruntime-lib", "", "ONNX Runtime shared `FILE` for the int8 model's check (default: $"+ortlib.LibraryEnv+
			", beside the executable, "+ortlib.CacheDir(os.LookupEnv)+", the system library path)")
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
	quantizing := cmd == "quantize" || precision != ""
	switch {
	case precision != "" && precision != quantize.Int8:
		fmt.Fprintf(stderr, "jetinfer model import: --quantize %q: want %s\n", precision, quantize.Int8)
		return 2
	case !quantizing && (len(exclude) > 0 || force || fusion.set || ortLib != ""):
		fmt.Fprintf(stderr, "jetinfer model import: --exclude, --force, --fuse and --onnxruntime-lib go with --quantize int8\n")
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
	var q *modelquant.Config
	if quantizing {
		rt, err := openRuntime(ortLib)
		if err != nil {
			fmt.Fprintf(stderr, "jetinfer model %s: %v\n", cmd, err)
			return 1
		}
		defer func() { _ = rt.Close() }() // every session the check opened is closed by then
		q = &modelquant.Config{Runtime: rt, Options: quantize.Options{Exclude: exclude}, Force: force, Fuse: fusion.mode}
	}
	store, closeNATS, err := openModelStore(ctx, *natsURL, client)
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer model %s: %v\n", cmd, err)
		return 1
	}
	defer closeNATS()

	switch cmd {
	case "import":
		err = modelImport(ctx, store, modelsource.Request{ModelID: modelID, Source: src, Replace: replace}, q, stdout, stderr)
	case "quantize":
		err = modelQuantize(ctx, store, pos[0], modelsource.Request{ModelID: modelID, Replace: replace}, *q, stdout)
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

// openRuntime loads ONNX Runtime as serve does (--onnxruntime-lib, then the usual places).
func openRuntime(flagValue string) (*inference.Runtime, error) {
	lib, err := ortlib.Find(ortlib.DefaultPlaces(flagValue))
	if err != nil {
		return nil, err
	}
	return inference.NewRuntime(inference.RuntimeConfig{LibraryPath: lib})
}

// modelImport imports req's source, quantized when q is set.
func modelImport(ctx context.Context, store *modelstore.Store, req modelsource.Request, q *modelquant.Config, stdout, stderr io.Writer) error {
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
	if q != nil {
		req.Quantize = quantizer(*q, req.Source.String())
	}
	m, err := modelsource.Import(ctx, store, hub, req)
	for _, b := range bars {
		b.finish()
	}
	if err != nil {
		return err
	}
	printQuantized(stdout, m)
	from := ""
	if m.Origin != nil {
		from = " from " + m.Origin.URI
	}
	fmt.Fprintf(stdout, "imported %s%s: %d files, %s, %s, version %.12s\n", m.ModelID, from, len(m.Files), humanBytes(m.Size), m.Precision, m.Digest)
	return nil
}

// quantizer is the import step that makes the int8 copy and checks it.
func quantizer(cfg modelquant.Config, from string) func(ctx context.Context, src, dst string) (*modelstore.Quantized, error) {
	cfg.From = from
	return func(ctx context.Context, src, dst string) (*modelstore.Quantized, error) {
		return modelquant.Write(ctx, cfg, src, dst)
	}
}

// printQuantized says what the quantization did: the nodes in int8 and in float, the fusions, and the check.
func printQuantized(w io.Writer, m modelstore.Manifest) {
	q := m.Quantized
	if q == nil {
		return
	}
	forced := ""
	if q.Forced {
		forced = " (stored with --force)"
	}
	fused := ""
	for _, op := range slices.Sorted(maps.Keys(q.Fused)) {
		fused += fmt.Sprintf(", %d %s fused", q.Fused[op], op)
	}
	switch {
	case q.UnfusedReason != "":
		fused = ", not fused (" + q.UnfusedReason + ")"
	case q.Fused != nil && fused == "":
		fused = ", nothing fused (no subgraph of the shapes the fusions know)"
	}
	fmt.Fprintf(w, "quantized %s to int8: %d nodes in int8, %d in float%s; %s%s\n", q.From, q.Int8, len(q.Float), fused, q.Agreement, forced)
	for _, name := range slices.Sorted(maps.Keys(q.Float)) {
		fmt.Fprintf(w, "  float: %s (%s)\n", name, q.Float[name])
	}
}

// modelQuantize stores an int8 copy of the stored model source as req.ModelID: its files as they are, its graph
// with the constant-weight MatMuls quantized and checked (package modelquant).
func modelQuantize(ctx context.Context, store *modelstore.Store, source string, req modelsource.Request, q modelquant.Config, stdout io.Writer) error {
	cache, err := os.MkdirTemp("", "jetinfer-quantize-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(cache) }()
	dir, err := store.Fetch(ctx, source, filepath.Join(cache, "source"))
	if err != nil {
		return err
	}
	req.Source = modelsource.Source{Dir: dir}
	req.StageDir = cache
	// The fetched copy's directory is named by the version it holds.
	req.Quantize = quantizer(q, fmt.Sprintf("%s (version %.12s)", source, filepath.Base(dir)))
	m, err := modelsource.Import(ctx, store, nil, req)
	if err != nil {
		return err
	}
	printQuantized(stdout, m)
	fmt.Fprintf(stdout, "imported %s: %d files, %s, %s, version %.12s\n", m.ModelID, len(m.Files), humanBytes(m.Size), m.Precision, m.Digest)
	return nil
}

// fusionFlag is --fuse: auto, true or false, and alone true.
type fusionFlag struct {
	mode modelquant.Fusion
	set  bool // given on the command line
}

func (f fusionFlag) String() string {
	switch f.mode {
	case modelquant.FuseOn:
		return "true"
	case modelquant.FuseOff:
		return "false"
	}
	return "auto"
}

func (f *fusionFlag) Set(v string) error {
	switch v {
	case "auto":
		f.mode = modelquant.FuseAuto
	case "true":
		f.mode = modelquant.FuseOn
	case "false":
		f.mode = modelquant.FuseOff
	default:
		return errors.New("want auto, true or false")
	}
	f.set = true
	return nil
}

func (f fusionFlag) IsBoolFlag() bool { return true }

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
	fmt.Fprintln(tw, "MODEL_ID\tPRECISION\tFILES\tSIZE\tCREATED\tSOURCE")
	for _, m := range list {
		source := "-"
		if m.Origin != nil {
			source = m.Origin.URI
			if m.Origin.StandsIn != "" {
				source += " (stands in for " + m.Origin.StandsIn + ")"
			}
		}
		switch q := m.Quantized; {
		case q != nil && m.Origin != nil:
			source += " (int8)"
		case q != nil:
			source = "int8 of " + q.From
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", m.ModelID, cmp.Or(m.Precision, "-"), len(m.Files), humanBytes(m.Size),
			m.Created.UTC().Format(time.RFC3339), source)
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
