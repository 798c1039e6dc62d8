package modelsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/inference/tokenizer"
	"github.com/jetinfer/jetinfer/modelstore"
)

// Errors about a repository's contents, which callers report as the
// user's mistake rather than a failure to retry.
var (
	ErrNoONNX        = errors.New("no ONNX graph in the repository")
	ErrAmbiguousONNX = errors.New("several ONNX graphs in the repository")
	ErrNoTokenizer   = errors.New("no tokenizer.json in the repository")
	ErrBadTokenizer  = errors.New("tokenizer.json cannot be loaded")
)

// sentence-transformers files the artifact format reads (see
// inference.readSentenceTransformers), and its module directories such as
// 1_Pooling/config.json.
var (
	stFiles    = []string{"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"}
	stModuleRe = regexp.MustCompile(`^[0-9]+_[A-Za-z]+/config\.json$`)
)

// link is one file of the artifact directory: the repository file From
// appears as To.
type link struct {
	From, To string
	Size     int64
}

// pickFiles chooses what a model artifact needs from a repository: the
// ONNX graph (as model.onnx), its external data files (under their own
// names, which the graph refers to), tokenizer.json, config.json and the
// sentence-transformers files.
func pickFiles(repo hfhub.Repo, onnxFile string) ([]link, error) {
	var graphs []string
	for _, f := range repo.Files {
		if strings.HasSuffix(f.Path, ".onnx") {
			graphs = append(graphs, f.Path)
		}
	}
	if onnxFile == "" {
		switch {
		case hasFile(repo, "onnx/"+artifact.ONNXFile):
			onnxFile = "onnx/" + artifact.ONNXFile
		case hasFile(repo, artifact.ONNXFile):
			onnxFile = artifact.ONNXFile
		case len(graphs) == 1:
			onnxFile = graphs[0]
		case len(graphs) == 0:
			return nil, fmt.Errorf("%w: %s@%s has no .onnx file; export the model to ONNX first", ErrNoONNX, repo.ID, repo.Commit)
		default:
			return nil, fmt.Errorf("%w: %s@%s has %s; choose one with --file (or hf://%s/FILE)", ErrAmbiguousONNX,
				repo.ID, repo.Commit, strings.Join(graphs, ", "), repo.ID)
		}
	} else if !hasFile(repo, onnxFile) {
		return nil, fmt.Errorf("%w: %s@%s has no %s (it has %s)", ErrNoONNX, repo.ID, repo.Commit, onnxFile, orNone(graphs))
	}
	add := func(out []link, from, to string) []link {
		f, _ := repo.File(from)
		return append(out, link{From: from, To: to, Size: f.Size})
	}
	out := add(nil, onnxFile, artifact.ONNXFile)
	dir, base := path.Split(onnxFile)
	for _, f := range repo.Files {
		name, ok := strings.CutPrefix(f.Path, dir)
		if ok && !strings.Contains(name, "/") && (strings.HasPrefix(name, base+"_data") || strings.HasPrefix(name, base+".data")) {
			out = add(out, f.Path, name)
		}
	}
	switch {
	case hasFile(repo, artifact.TokenizerFile):
		out = add(out, artifact.TokenizerFile, artifact.TokenizerFile)
	case dir != "" && hasFile(repo, dir+artifact.TokenizerFile):
		out = add(out, dir+artifact.TokenizerFile, artifact.TokenizerFile)
	default:
		return nil, fmt.Errorf("%w: %s@%s", ErrNoTokenizer, repo.ID, repo.Commit)
	}
	for _, f := range repo.Files {
		if f.Path == artifact.HFConfigFile || f.Path == artifact.ConfigFile || f.Path == artifact.TokenizerConfigFile ||
			slices.Contains(stFiles, f.Path) || stModuleRe.MatchString(f.Path) {
			out = add(out, f.Path, f.Path)
		}
	}
	return out, nil
}

func hasFile(repo hfhub.Repo, p string) bool {
	_, ok := repo.File(p)
	return ok
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "no .onnx file"
	}
	return strings.Join(list, ", ")
}

// Hub is what staging needs of a Hub client.
type Hub interface {
	Resolve(ctx context.Context, repoID, revision string) (hfhub.Repo, error)
	Download(ctx context.Context, repo hfhub.Repo, path string, progress func(int64)) (string, error)
}

// Staged is a Hub repository laid out as an artifact directory.
type Staged struct {
	// Dir holds links into the Hugging Face cache and the jetinfer.json
	// of the source table; Close removes it.
	Dir    string
	Origin modelstore.Origin
}

// Close removes the staging directory (the cache keeps the files).
func (s Staged) Close() error { return os.RemoveAll(s.Dir) }

// StageHub downloads what the model needs from src's repository into the
// Hugging Face cache and lays it out as an artifact directory. config,
// if set, becomes its jetinfer.json. progress is told the bytes done of
// the whole model as they arrive.
func StageHub(ctx context.Context, hub Hub, src Source, config string, progress func(done, total int64)) (Staged, error) {
	if src.Repo == "" {
		return Staged{}, fmt.Errorf("%w: %s is not a Hub repository", ErrInvalid, src)
	}
	repo, err := hub.Resolve(ctx, src.Repo, src.Revision)
	if err != nil {
		return Staged{}, err
	}
	links, err := pickFiles(repo, src.File)
	if err != nil && repo.FromCache {
		// The cache may hold only part of the repository.
		return Staged{}, fmt.Errorf("%w: %s@%s could not be listed on the Hub (offline or unreachable) and the cache does not hold a usable model: %w",
			hfhub.ErrUnavailable, repo.ID, repo.Revision, err)
	}
	if err != nil {
		return Staged{}, err
	}
	if config != "" { // the source table's jetinfer.json wins over the repository's
		links = slices.DeleteFunc(links, func(l link) bool { return l.To == artifact.ConfigFile })
	}
	var total int64
	for _, l := range links {
		total += max(l.Size, 0)
	}
	if progress == nil {
		progress = func(int64, int64) {}
	}
	var done atomic.Int64
	progress(0, total)
	dir, err := os.MkdirTemp("", "jetinfer-stage-")
	if err != nil {
		return Staged{}, err
	}
	graph := links[0].From // pickFiles puts it first
	staged := Staged{Dir: dir, Origin: modelstore.Origin{
		URI:  (Source{Repo: repo.ID, Revision: repo.Commit, File: graph}).String(),
		Repo: repo.ID, Revision: repo.Revision, Commit: repo.Commit, File: graph,
	}}
	fail := func(err error) (Staged, error) {
		_ = staged.Close()
		return Staged{}, err
	}
	// The tokenizer first: one the engine cannot load fails the import
	// before the graph's hundreds of megabytes are fetched.
	if i := slices.IndexFunc(links, func(l link) bool { return l.To == artifact.TokenizerFile }); i > 0 {
		tok := links[i]
		links = append([]link{tok}, slices.Delete(links, i, i+1)...)
	}
	for _, l := range links {
		p, err := hub.Download(ctx, repo, l.From, func(n int64) { progress(done.Add(n), total) })
		if err != nil {
			return fail(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(l.To))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fail(err)
		}
		if err := os.Symlink(p, dst); err != nil {
			return fail(err)
		}
		if l.To == artifact.TokenizerFile {
			if err := checkTokenizer(dir, repo.ID+"@"+repo.Commit); err != nil {
				return fail(err)
			}
		}
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, artifact.ConfigFile), []byte(config), 0o644); err != nil {
			return fail(err)
		}
	}
	return staged, nil
}

// checkTokenizer refuses a tokenizer the engine cannot load, which would
// only fail at deployment, on every worker.
func checkTokenizer(dir, what string) error {
	if _, err := tokenizer.Load(tokenizer.Config{Path: filepath.Join(dir, artifact.TokenizerFile), MaxLength: 512}); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadTokenizer, what, err)
	}
	return nil
}

// Request is one import into the model store.
type Request struct {
	ModelID string
	Source  Source
	// Config, if set, becomes a Hub model's jetinfer.json.
	Config string
	// StandsIn is recorded in the manifest's origin.
	StandsIn string
	Replace  bool
	// Downloaded is told the bytes of a download, Uploaded the bytes
	// written to the model store.
	Downloaded, Uploaded func(done, total int64)
	// StageDir holds what a mirror download and a quantization stage
	// (default: the system's temporary directory); Hub downloads stage in
	// the Hugging Face cache.
	StageDir string
	// HTTP is the client for mirrors; nil means NewMirrorClient().
	HTTP *http.Client
	// Quantize, when set, makes the stored artifact from the staged one (src): it writes it into dst, an empty
	// directory, and returns what the manifest records of it; nil and no error store src as it is.
	Quantize func(ctx context.Context, src, dst string) (*modelstore.Quantized, error)
}

// Import brings req.Source into the store as req.ModelID: a directory as
// it is, a Hub repository through the Hugging Face cache, quantized on the
// way when req.Quantize is set. Nothing is visible in the store before the
// whole model is (modelstore.Import).
func Import(ctx context.Context, store *modelstore.Store, hub Hub, req Request) (modelstore.Manifest, error) {
	if err := modelstore.ValidateModelID(req.ModelID); err != nil {
		return modelstore.Manifest{}, err
	}
	opts := modelstore.ImportOptions{Replace: req.Replace, Progress: req.Uploaded}
	dir := req.Source.Dir
	if dir == "" {
		var staged Staged
		var err error
		switch {
		case req.Source.URL != "":
			client := req.HTTP
			if client == nil {
				client = NewMirrorClient()
				defer client.CloseIdleConnections()
			}
			staged, err = StageMirror(ctx, client, req.Source.URL, stageParent(req), req.Downloaded)
		case hub == nil:
			return modelstore.Manifest{}, fmt.Errorf("%w: %s: no Hub client", ErrInvalid, req.Source)
		default:
			staged, err = StageHub(ctx, hub, req.Source, req.Config, req.Downloaded)
		}
		if err != nil {
			return modelstore.Manifest{}, err
		}
		defer staged.Close()
		origin := staged.Origin
		origin.StandsIn = req.StandsIn
		opts.Origin = &origin
		dir = staged.Dir
	}
	if req.Quantize != nil {
		parent := stageParent(req)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return modelstore.Manifest{}, err
		}
		tmp, err := os.MkdirTemp(parent, "jetinfer-quantize-")
		if err != nil {
			return modelstore.Manifest{}, err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		if opts.Quantized, err = req.Quantize(ctx, dir, tmp); err != nil {
			return modelstore.Manifest{}, err
		}
		if opts.Quantized != nil {
			dir = tmp
		}
	}
	p, err := Precision(dir)
	if err != nil {
		return modelstore.Manifest{}, err
	}
	opts.Precision = p
	return store.Import(ctx, req.ModelID, dir, opts)
}

// stageParent is where downloads and quantized copies are staged.
func stageParent(req Request) string {
	if req.StageDir != "" {
		return req.StageDir
	}
	return os.TempDir()
}

// Precision reads the precision of an artifact directory's graph (quantize.Precision) without loading its
// weights; "" without a graph, which the store refuses.
func Precision(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, artifact.ONNXFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	s, err := onnxgraph.Summarize(f, st.Size())
	if err != nil {
		return "", fmt.Errorf("%w: %s is not an ONNX model: %w", ErrInvalid, artifact.ONNXFile, err)
	}
	return quantize.Precision(s), nil
}

// Link makes dst the file target is (a hard link), or a copy of it across file systems. Not a symbolic link:
// ONNX Runtime refuses a graph's external data file reached through one out of the graph's directory.
func Link(target, dst string) error {
	target, err := filepath.EvalSymlinks(target)
	if err != nil {
		return err
	}
	if os.Link(target, dst) == nil {
		return nil
	}
	in, err := os.Open(target)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
