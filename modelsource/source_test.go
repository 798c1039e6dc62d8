package modelsource

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/hfhub"
	"github.com/jetinfer/jetinfer/hfhub/hubtest"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Source{
		"hf://intfloat/multilingual-e5-small":                           {Repo: "intfloat/multilingual-e5-small"},
		"hf://intfloat/multilingual-e5-small@v1.0":                      {Repo: "intfloat/multilingual-e5-small", Revision: "v1.0"},
		"hf://org/name@refs%2Fpr%2F1/onnx/model_qint8_avx512_vnni.onnx": {Repo: "org/name", Revision: "refs/pr/1", File: "onnx/model_qint8_avx512_vnni.onnx"},
		"hf://Xenova/ms-marco-MiniLM-L-6-v2/onnx/model.onnx":            {Repo: "Xenova/ms-marco-MiniLM-L-6-v2", File: "onnx/model.onnx"},
		"/srv/models/elser": {Dir: "/srv/models/elser"},
		"models/e5":         {Dir: "models/e5"},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
			continue
		}
		if back := got.String(); back != in {
			t.Errorf("%+v renders as %q, parsed from %q", got, back, in)
		}
	}
	for in, want := range map[string]string{
		"":                        "want hf://org/name[@revision][/file.onnx], an http(s) URL or a directory",
		"s3://bucket/models":      "want hf://org/name[@revision][/file.onnx], an http(s) URL or a directory",
		"https://":                "not a URL",
		"hf://org":                "want hf://org/name",
		"hf://org/name@":          `bad revision ""`,
		"hf://org/na me":          "want org/name of letters, digits",
		"hf://org/name/README.md": "the file after the repository must be an .onnx graph",
	} {
		if _, err := Parse(in); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want ErrInvalid with %q", in, err, want)
		}
	}
}

func TestTable(t *testing.T) {
	o := Overrides{}
	if err := o.Set(".elser_model_2=hf://org/my-elser@v2, .rerank-v1=/models/rerank"); err != nil {
		t.Fatal(err)
	}
	if err := o.Set(".multilingual-e5-small=hf://org/e5/onnx/model_O4.onnx"); err != nil {
		t.Fatal(err)
	}
	if got, want := o.String(), ".elser_model_2=hf://org/my-elser@v2,.multilingual-e5-small=hf://org/e5/onnx/model_O4.onnx,.rerank-v1=/models/rerank"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	table, err := NewTable(o)
	if err != nil {
		t.Fatal(err)
	}
	elser, _ := table.Lookup(config.ModelELSER)
	if elser.Source != (Source{Repo: "org/my-elser", Revision: "v2"}) || elser.StandsIn != "" || elser.Config != `{"task_type":"sparse_embedding"}` {
		t.Errorf("overridden ELSER: %+v", elser)
	}
	if rerank, _ := table.Lookup(config.ModelRerankV1); rerank.Source.Dir != "/models/rerank" || rerank.Config != "" {
		t.Errorf("a directory brings its own jetinfer.json: %+v", rerank)
	}
	// The ids left alone keep their defaults.
	linux, _ := table.Lookup(config.ModelELSERLinux)
	if linux.Source != (Source{Repo: spladeRepo, File: "onnx/model.onnx"}) || !strings.Contains(linux.StandsIn, "ELSER v2") {
		t.Errorf("default ELSER linux: %+v", linux)
	}
	if got := table.IDs(); !reflect.DeepEqual(got, []string{config.ModelELSER, config.ModelELSERLinux, config.ModelE5Small, config.ModelE5SmallLinux, config.ModelRerankV1}) {
		t.Errorf("ids %v", got)
	}
	if _, err := NewTable(Overrides{"my-model": {Dir: "/x"}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "my-model is not a built-in model id") {
		t.Errorf("unknown id: %v", err)
	}
	if err := (Overrides{}).Set("no-equals"); !errors.Is(err, ErrInvalid) {
		t.Errorf("pair without '=': %v", err)
	}
}

func repoOf(paths ...string) hfhub.Repo {
	r := hfhub.Repo{ID: "org/m", Commit: strings.Repeat("a", 40)}
	for _, p := range paths {
		r.Files = append(r.Files, hfhub.RepoFile{Path: p, Size: int64(len(p))})
	}
	return r
}

func TestPickFiles(t *testing.T) {
	tests := []struct {
		name  string
		repo  hfhub.Repo
		file  string
		want  []string // from→to
		error string
	}{
		{"e5 layout", repoOf("onnx/model.onnx", "onnx/model_qint8_avx512_vnni.onnx", "tokenizer.json", "config.json", "modules.json",
			"1_Pooling/config.json", "sentence_bert_config.json", "config_sentence_transformers.json", "README.md", "model.safetensors", "onnx/config.json"), "",
			[]string{"onnx/model.onnx→model.onnx", "tokenizer.json→tokenizer.json", "config.json→config.json", "modules.json→modules.json",
				"1_Pooling/config.json→1_Pooling/config.json", "sentence_bert_config.json→sentence_bert_config.json",
				"config_sentence_transformers.json→config_sentence_transformers.json"}, ""},
		{"int8 graph by name", repoOf("onnx/model.onnx", "onnx/model_qint8_avx512_vnni.onnx", "tokenizer.json"), "onnx/model_qint8_avx512_vnni.onnx",
			[]string{"onnx/model_qint8_avx512_vnni.onnx→model.onnx", "tokenizer.json→tokenizer.json"}, ""},
		{"external data keeps its name", repoOf("onnx/model.onnx", "onnx/model.onnx_data", "onnx/tokenizer.json", "onnx/other.onnx_data"), "",
			[]string{"onnx/model.onnx→model.onnx", "onnx/model.onnx_data→model.onnx_data", "onnx/tokenizer.json→tokenizer.json"}, ""},
		{"root graph", repoOf("model.onnx", "tokenizer.json"), "", []string{"model.onnx→model.onnx", "tokenizer.json→tokenizer.json"}, ""},
		// A decoder's padding side is in tokenizer_config.json.
		{"decoder layout", repoOf("onnx/model.onnx", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"), "",
			[]string{"onnx/model.onnx→model.onnx", "tokenizer.json→tokenizer.json", "tokenizer_config.json→tokenizer_config.json"}, ""},
		{"the only graph", repoOf("exported/encoder.onnx", "tokenizer.json"), "", []string{"exported/encoder.onnx→model.onnx", "tokenizer.json→tokenizer.json"}, ""},
		{"no graph", repoOf("model.safetensors", "tokenizer.json"), "", nil, "no ONNX graph in the repository: org/m@aaaa"},
		{"two graphs", repoOf("a.onnx", "b/c.onnx", "tokenizer.json"), "", nil, "has a.onnx, b/c.onnx; choose one with --file (or hf://org/m/FILE)"},
		{"missing chosen graph", repoOf("onnx/model.onnx", "tokenizer.json"), "onnx/model_O4.onnx", nil, "has no onnx/model_O4.onnx (it has onnx/model.onnx)"},
		{"no tokenizer", repoOf("model.onnx", "vocab.txt"), "", nil, "no tokenizer.json in the repository: org/m@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links, err := pickFiles(tt.repo, tt.file)
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("got %v, want an error with %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range links {
				got = append(got, l.From+"→"+l.To)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestStageHub(t *testing.T) {
	tok, err := os.ReadFile("../inference/tokenizer/testdata/bert-base-uncased/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	hub := hubtest.Start()
	t.Cleanup(hub.Close)
	hub.Add(hubtest.Repo{ID: "org/splade", Files: map[string][]byte{
		"onnx/model.onnx": []byte("graph"), "tokenizer.json": tok, "config.json": []byte(`{}`), "jetinfer.json": []byte(`{"task_type":"rerank"}`),
	}})
	hub.Add(hubtest.Repo{ID: "org/broken", Files: map[string][]byte{"model.onnx": []byte("graph"), "tokenizer.json": []byte(`{"model":{"type":"WordLevel"}}`)}})
	client, err := hfhub.New(hfhub.Config{Endpoint: hub.URL(), CacheDir: t.TempDir(), Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var last [2]int64
	staged, err := StageHub(ctx, client, Source{Repo: "org/splade"}, `{"task_type":"sparse_embedding"}`, func(done, total int64) { last = [2]int64{done, total} })
	if err != nil {
		t.Fatal(err)
	}
	defer staged.Close()
	if want := int64(len("graph") + len(tok) + len(`{}`)); last != [2]int64{want, want} {
		t.Errorf("last progress %v, want %d of %d", last, want, want)
	}
	if staged.Origin.URI != "hf://org/splade@"+hub.Commit("org/splade")+"/onnx/model.onnx" || staged.Origin.Revision != "main" {
		t.Errorf("origin %+v", staged.Origin)
	}
	entries, _ := os.ReadDir(staged.Dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"config.json", "jetinfer.json", "model.onnx", "tokenizer.json"}) {
		t.Errorf("staged %v", names)
	}
	// The source table's jetinfer.json, not the repository's.
	if data, _ := os.ReadFile(filepath.Join(staged.Dir, "jetinfer.json")); string(data) != `{"task_type":"sparse_embedding"}` {
		t.Errorf("jetinfer.json = %s", data)
	}
	if data, _ := os.ReadFile(filepath.Join(staged.Dir, "model.onnx")); string(data) != "graph" {
		t.Errorf("model.onnx = %q", data)
	}

	_, err = StageHub(ctx, client, Source{Repo: "org/broken"}, "", nil)
	if !errors.Is(err, ErrBadTokenizer) || !strings.Contains(err.Error(), "WordLevel") {
		t.Errorf("unloadable tokenizer: %v", err)
	}
}
