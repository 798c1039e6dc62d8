// Package modelsource says where models come from and brings them into
// the model store: the table of sources behind the built-in model ids
// (Hugging Face Hub repositories by default, overridable per id), the
// parsing of hf:// and directory sources, and the staging of a Hub
// repository's files as a model artifact directory.
package modelsource

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/hfhub"
)

// HubScheme prefixes Hub sources: hf://org/name[@revision][/file].
const HubScheme = "hf://"

// ErrInvalid wraps sources that cannot be parsed.
var ErrInvalid = errors.New("invalid model source")

// Source is where one model comes from: a Hub repository (Repo set), a
// local artifact directory (Dir set) or one on a mirror (URL set).
type Source struct {
	// Repo is the Hub repository, org/name.
	Repo string
	// Revision is a branch, tag or commit; "" means main.
	Revision string
	// File is the ONNX graph in the repository; "" picks onnx/model.onnx,
	// else model.onnx, else the only .onnx file.
	File string
	// Dir is an artifact directory (model.onnx, tokenizer.json, ...).
	Dir string
	// URL is an artifact directory on an HTTP server: URL/model.onnx, ...
	URL string
}

// Parse reads "hf://org/name[@revision][/path/to/file.onnx]" (a revision
// with a slash is URL-escaped: refs%2Fpr%2F1), an http(s) URL of an
// artifact directory, or a directory path.
func Parse(s string) (Source, error) {
	rest, ok := strings.CutPrefix(s, HubScheme)
	if !ok {
		if IsURL(s) {
			if u, err := url.Parse(s); err != nil || u.Host == "" {
				return Source{}, fmt.Errorf("%w: %q: not a URL", ErrInvalid, s)
			}
			return Source{URL: strings.TrimRight(s, "/")}, nil
		}
		if s == "" || strings.Contains(s, "://") {
			return Source{}, fmt.Errorf("%w: %q: want hf://org/name[@revision][/file.onnx], an http(s) URL or a directory", ErrInvalid, s)
		}
		return Source{Dir: s}, nil
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 {
		return Source{}, fmt.Errorf("%w: %q: want hf://org/name", ErrInvalid, s)
	}
	src := Source{Repo: parts[0] + "/" + parts[1]}
	if name, rev, ok := strings.Cut(parts[1], "@"); ok {
		r, err := url.PathUnescape(rev)
		if err != nil || r == "" {
			return Source{}, fmt.Errorf("%w: %q: bad revision %q", ErrInvalid, s, rev)
		}
		src.Repo, src.Revision = parts[0]+"/"+name, r
	}
	if err := hfhub.ValidateRepoID(src.Repo); err != nil {
		return Source{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(parts) == 3 {
		src.File = parts[2]
		if !strings.HasSuffix(src.File, ".onnx") {
			return Source{}, fmt.Errorf("%w: %q: the file after the repository must be an .onnx graph", ErrInvalid, s)
		}
	}
	return src, nil
}

// IsURL reports whether s names an HTTP server (a mirror) rather than a
// directory.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// String renders the source as Parse reads it.
func (s Source) String() string {
	switch {
	case s.URL != "":
		return s.URL
	case s.Repo == "":
		return s.Dir
	}
	out := HubScheme + s.Repo
	if s.Revision != "" {
		out += "@" + url.PathEscape(s.Revision)
	}
	if s.File != "" {
		out += "/" + s.File
	}
	return out
}

// BuiltIn is the source behind one built-in model id.
type BuiltIn struct {
	ModelID string
	Source  Source
	// StandsIn, when set, says that Source is not the model Elasticsearch
	// serves under this id (Elastic publishes it only as TorchScript) but
	// an open model of the same kind, and names the one it stands in for.
	StandsIn string
	// Config is written as the artifact's jetinfer.json: what the
	// repository's files do not say (the task, E5's prefixes).
	Config string
	// Int8 says the id runs in int8, as Elasticsearch's _linux-x86_64
	// variants do: a float graph from any source is quantized on import.
	Int8 bool
}

// The open models behind the built-in ids, chosen for their licences
// (Apache-2.0 / MIT) and their ONNX exports; see README "Built-in models".
const (
	e5Repo     = "intfloat/multilingual-e5-small"
	spladeRepo = "prithivida/Splade_PP_en_v1"
	rerankRepo = "Xenova/ms-marco-MiniLM-L-6-v2"
)

// Defaults is the compiled-in source table, one entry per built-in id.
func Defaults() []BuiltIn {
	// Elasticsearch's E5 embeds "query: " / "passage: "-prefixed text and
	// compares by cosine (its packaged model metadata).
	e5 := `{"task_type":"text_embedding","pooling":"mean","normalize":true,"prefix_strings":{"search":"query: ","ingest":"passage: "}}`
	splade := `{"task_type":"sparse_embedding"}`
	rerank := `{"task_type":"rerank"}`
	elser := "Elastic's ELSER v2 (" + config.ModelELSER + ")"
	return []BuiltIn{
		{ModelID: config.ModelELSER, Source: Source{Repo: spladeRepo, File: "onnx/model.onnx"}, StandsIn: elser, Config: splade},
		// Elasticsearch's x86-64 builds are int8-quantized; so are these:
		// SPLADE's float graph quantized on import, E5's own int8 graph.
		{ModelID: config.ModelELSERLinux, Source: Source{Repo: spladeRepo, File: "onnx/model.onnx"}, StandsIn: elser, Config: splade, Int8: true},
		{ModelID: config.ModelE5Small, Source: Source{Repo: e5Repo, File: "onnx/model.onnx"}, Config: e5},
		{ModelID: config.ModelE5SmallLinux, Source: Source{Repo: e5Repo, File: "onnx/model_qint8_avx512_vnni.onnx"}, Config: e5, Int8: true},
		{ModelID: config.ModelRerankV1, Source: Source{Repo: rerankRepo, File: "onnx/model.onnx"},
			StandsIn: "Elastic Rerank (" + config.ModelRerankV1 + ", DeBERTa-v3)", Config: rerank},
	}
}

// Table is the source of every built-in id: the defaults with the
// user's overrides.
type Table struct {
	byID map[string]BuiltIn
}

// NewTable applies overrides (model id → source) to the defaults. An
// override replaces the source and drops the stand-in note; the built-in
// jetinfer.json stays for a Hub repository (an artifact directory, local or
// on a mirror, has its own).
func NewTable(overrides map[string]Source) (Table, error) {
	t := Table{byID: map[string]BuiltIn{}}
	for _, b := range Defaults() {
		t.byID[b.ModelID] = b
	}
	var errs []error
	for id, src := range overrides {
		b, ok := t.byID[id]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s is not a built-in model id (%s)", ErrInvalid, id, strings.Join(t.IDs(), ", ")))
			continue
		}
		b.Source, b.StandsIn = src, ""
		if src.Repo == "" { // an artifact directory has its own jetinfer.json
			b.Config = ""
		}
		t.byID[id] = b
	}
	return t, errors.Join(errs...)
}

// Lookup returns the source of a built-in id.
func (t Table) Lookup(modelID string) (BuiltIn, bool) {
	b, ok := t.byID[modelID]
	return b, ok
}

// IDs lists the built-in ids, sorted.
func (t Table) IDs() []string {
	ids := make([]string, 0, len(t.byID))
	for id := range t.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Overrides is a flag.Value of "ID=SOURCE" pairs, comma-separated or
// repeated: --model-source .elser_model_2=hf://org/name,.rerank-v1=/models/rerank
type Overrides map[string]Source

func (o Overrides) String() string {
	ids := make([]string, 0, len(o))
	for id := range o {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []string
	for _, id := range ids {
		out = append(out, id+"="+o[id].String())
	}
	return strings.Join(out, ",")
}

// Set adds pairs; the ids are checked by NewTable.
func (o Overrides) Set(v string) error {
	for _, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		id, s, ok := strings.Cut(pair, "=")
		if !ok || id == "" {
			return fmt.Errorf("%w: %q: want MODEL_ID=SOURCE", ErrInvalid, pair)
		}
		src, err := Parse(s)
		if err != nil {
			return err
		}
		o[id] = src
	}
	return nil
}
