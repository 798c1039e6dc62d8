// Package modelquant makes the int8 copy of a float model artifact at import and checks it before it is stored:
// the graph is quantized (package quantize, after package fuse's fusions unless they stand in the way), then both models run on the
// same fixed texts and the int8 one must follow the float one within its task's bound (quantize.DenseAgreement,
// SparseAgreement, RerankAgreement). It loads ONNX Runtime sessions, which is why it is not part of the pure
// quantize package.
package modelquant

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/jetinfer/jetinfer/inference"
	"github.com/jetinfer/jetinfer/inference/artifact"
	"github.com/jetinfer/jetinfer/inference/fuse"
	"github.com/jetinfer/jetinfer/inference/onnxgraph"
	"github.com/jetinfer/jetinfer/inference/quantize"
	"github.com/jetinfer/jetinfer/modelsource"
	"github.com/jetinfer/jetinfer/modelstore"
)

// ErrBeyondBound is the error of an int8 model whose outputs stray further from the float model's than its
// task's bound allows.
var ErrBeyondBound = errors.New("the int8 model strays beyond its accuracy bound")

// ErrNothingToQuantize is the error of a graph without a MatMul by a constant float weight.
var ErrNothingToQuantize = errors.New("no MatMul with a constant float weight to quantize")

// Fusion says whether package fuse's fusions run before quantizing.
type Fusion int

const (
	// FuseAuto, the default, fuses and keeps the fused copy when it holds its task's bound; when it does not,
	// when an excluded node is one a fusion absorbed, or when the fused copy fails (an export the
	// fusions half-match), the copy is made again without fusions, and that one is stored (with Force, even when
	// both are beyond the bound). Fused int8 ran faster than unfused int8 at two threads in every run measured and
	// within the noise of it at one (README "Performance"), and differs from it by the noise of int8 alone, so the
	// bound decides and the speed does not.
	FuseAuto Fusion = iota
	// FuseOff quantizes the graph as exported.
	FuseOff
	// FuseOn fuses whatever the bound says: beyond it the copy is refused like any other.
	FuseOn
)

// Config says how to quantize and check.
type Config struct {
	Runtime *inference.Runtime
	// Options are the quantizer's (nodes kept in float).
	Options quantize.Options
	// Force stores an int8 model whose agreement is beyond its bound (recorded as forced).
	Force bool
	// Fuse says whether attention and the layer normalizations after residual connections become ONNX Runtime's
	// fused operators (package fuse) before quantizing.
	Fuse Fusion
	// From names the float model in the record: its source or model id.
	From string
}

// checkFunc measures how closely the int8 model in int8Dir follows the float one in floatDir (Check; tests
// substitute their own).
type checkFunc func(ctx context.Context, rt *inference.Runtime, floatDir, int8Dir string) (quantize.Agreement, error)

// Write quantizes the artifact directory src into dst (an empty directory): the quantized graph written, src's
// other files linked (hard links, or copies across file systems). It then runs both models on the check texts and
// returns the record of what it did, or ErrBeyondBound with the measured figure unless cfg.Force; with FuseAuto the
// copy may be made and checked a second time, without fusions (the record's UnfusedReason says why, and a refusal
// ends with the fused copy's figure). A model already quantized is refused with quantize.ErrAlreadyQuantized.
func Write(ctx context.Context, cfg Config, src, dst string) (*modelstore.Quantized, error) {
	return write(ctx, cfg, src, dst, Check)
}

func write(ctx context.Context, cfg Config, src, dst string, check checkFunc) (*modelstore.Quantized, error) {
	// An int8 graph (a built-in id's own int8 file) is refused before its weights are read.
	if p, err := modelsource.Precision(src); err != nil {
		return nil, err
	} else if p != quantize.Float32 && p != quantize.Float16 {
		return nil, fmt.Errorf("%w: its graph runs %s", quantize.ErrAlreadyQuantized, p)
	}
	data, err := os.ReadFile(filepath.Join(src, artifact.ONNXFile))
	if err != nil {
		return nil, err
	}
	decode := func() (*onnxgraph.Model, error) {
		graph, err := onnxgraph.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", artifact.ONNXFile, err)
		}
		return graph, nil
	}
	graph, err := decode()
	if err != nil {
		return nil, err
	}
	if err := linkFiles(src, dst, false); err != nil {
		return nil, err
	}
	floatDir := src
	if slices.ContainsFunc(graph.Graph.Initializers, (*onnxgraph.Tensor).External) {
		// A staged Hub model's files are symbolic links into the Hugging Face cache, and ONNX Runtime refuses
		// external data reached through one: the float model is checked from linked (or copied) files.
		if floatDir, err = os.MkdirTemp(filepath.Dir(dst), ".float-"); err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(floatDir) }()
		if err := linkFiles(src, floatDir, true); err != nil {
			return nil, err
		}
	}
	// attempt quantizes graph, fused or not, writes it and checks it; its record says what it fused even when it
	// fails.
	attempt := func(graph *onnxgraph.Model, fused bool) (*modelstore.Quantized, error) {
		rec := &modelstore.Quantized{From: cfg.From}
		if fused {
			rec.Fused = map[string]int{}
			// Spelled-out normalizations folded first: SkipLayerNormalization starts from them. Attention before
			// it: SkipLayerNormalization takes the residual Adds its output feeds.
			if n := fuse.LayerNorm(graph); n > 0 {
				rec.Fused["LayerNormalization"] = n
			}
			if n := fuse.Attention(graph); n > 0 {
				rec.Fused["Attention"] = n
			}
			if n := fuse.SkipLayerNorm(graph); n > 0 {
				rec.Fused["SkipLayerNormalization"] = n
			}
		}
		opts := cfg.Options
		opts.ExternalDir = src // the external data file, if any, is linked into dst for the weights left in float
		report, err := quantize.Dynamic(graph, opts)
		if err != nil {
			return rec, err
		}
		if len(report.Quantized) == 0 {
			return rec, fmt.Errorf("%w (%d left in float)", ErrNothingToQuantize, len(report.Float))
		}
		rec.Int8, rec.Float = len(report.Quantized), report.Float
		if err := os.WriteFile(filepath.Join(dst, artifact.ONNXFile), graph.Encode(), 0o644); err != nil {
			return rec, err
		}
		rec.Agreement, err = check(ctx, cfg.Runtime, floatDir, dst)
		return rec, err
	}

	rec, err := attempt(graph, cfg.Fuse != FuseOff)
	if cfg.Fuse == FuseAuto && len(rec.Fused) > 0 {
		// Fusions absorb nodes; the copy is made again without them when they stand in the way.
		var why string
		switch {
		case errors.Is(err, quantize.ErrUnknownExclude):
			why = "an excluded node is one a fusion absorbs"
		case err != nil && ctx.Err() == nil:
			why = "the fused copy failed: " + err.Error()
		case err == nil && !rec.Agreement.Holds():
			why = "the fused copy strays beyond its accuracy bound: " + rec.Agreement.String()
		}
		if why != "" {
			if graph, err = decode(); err != nil { // the fusions changed the first one
				return nil, err
			}
			rec, err = attempt(graph, false)
			rec.UnfusedReason = why
		}
	}
	if err != nil {
		return nil, err
	}
	if !rec.Agreement.Holds() {
		if !cfg.Force {
			if rec.UnfusedReason != "" {
				return nil, fmt.Errorf("%w: %s (made again without fusions: %s)", ErrBeyondBound, rec.Agreement, rec.UnfusedReason)
			}
			return nil, fmt.Errorf("%w: %s", ErrBeyondBound, rec.Agreement)
		}
		rec.Forced = true
	}
	return rec, nil
}

// linkFiles links every file of src into dst, keeping the tree (modelsource.Link), the graph only when withGraph.
func linkFiles(src, dst string, withGraph bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == artifact.ONNXFile && !withGraph {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return modelsource.Link(path, filepath.Join(dst, rel))
	})
}

// Check runs the float model in floatDir and the quantized one in int8Dir on the check texts (one thread each)
// and measures their agreement for the model's task.
func Check(ctx context.Context, rt *inference.Runtime, floatDir, int8Dir string) (quantize.Agreement, error) {
	ref, err := inference.LoadModel(ctx, rt, floatDir, inference.LoadOptions{Threads: 1})
	if err != nil {
		return quantize.Agreement{}, fmt.Errorf("load the float model: %w", err)
	}
	defer ref.Close()
	q, err := inference.LoadModel(ctx, rt, int8Dir, inference.LoadOptions{Threads: 1})
	if err != nil {
		return quantize.Agreement{}, fmt.Errorf("load the int8 model: %w", err)
	}
	defer q.Close()
	texts := checkTexts()
	switch task := ref.Spec().Task; task {
	case inference.TaskTextEmbedding:
		a, err := ref.Embed(ctx, texts, "")
		if err != nil {
			return quantize.Agreement{}, err
		}
		b, err := q.Embed(ctx, texts, "")
		if err != nil {
			return quantize.Agreement{}, err
		}
		return quantize.DenseAgreement(a, b), nil
	case inference.TaskSparseEmbedding:
		a, err := ref.SparseEmbed(ctx, texts, "")
		if err != nil {
			return quantize.Agreement{}, err
		}
		b, err := q.SparseEmbed(ctx, texts, "")
		if err != nil {
			return quantize.Agreement{}, err
		}
		return quantize.SparseAgreement(inference.SparseTerms(a), inference.SparseTerms(b)), nil
	case inference.TaskRerank:
		a, err := ref.Rerank(ctx, checkQuery, texts)
		if err != nil {
			return quantize.Agreement{}, err
		}
		b, err := q.Rerank(ctx, checkQuery, texts)
		if err != nil {
			return quantize.Agreement{}, err
		}
		return quantize.RerankAgreement(a, b), nil
	default:
		return quantize.Agreement{}, fmt.Errorf("no accuracy check for task %q", task)
	}
}

// checkQuery is the query the rerank check scores every check text against.
const checkQuery = "how do search engines rank documents by relevance?"

// checkTexts are the fixed inputs of the check: 50 texts of the kinds the built-in models serve (queries,
// passages, several languages, some long), so each run measures the same thing.
func checkTexts() []string {
	return []string{
		"how do search engines rank documents by relevance?",
		"BM25 scores a document by the frequency of the query's terms, damped by the document's length.",
		"Dense retrieval embeds queries and passages in the same vector space and compares them by cosine.",
		"Learned sparse models such as SPLADE expand a text into weighted vocabulary terms.",
		"A cross-encoder reads the query and the document together and outputs one relevance score.",
		"what is the capital of France?",
		"Paris is the capital and most populous city of France, on the Seine.",
		"The Eiffel Tower was completed in 1889 for the World's Fair.",
		"how many legs does a spider have",
		"Spiders are arachnids with eight legs and two body segments.",
		"Photosynthesis converts light energy into chemical energy stored in glucose.",
		"The mitochondria produce most of the cell's supply of ATP.",
		"best way to cook rice without a rice cooker",
		"Rinse the rice, simmer it covered with one and a half cups of water per cup, then let it rest.",
		"The stock market fell sharply after the central bank raised interest rates.",
		"Inflation measures how quickly the prices of goods and services rise over time.",
		"symptoms of vitamin D deficiency",
		"Fatigue, bone pain and muscle weakness can follow a lack of vitamin D.",
		"The goalkeeper saved a penalty in the final minute of extra time.",
		"A marathon is 42.195 kilometres long.",
		"How to reset a forgotten router password",
		"Hold the reset button for ten seconds to restore the router's factory settings.",
		"Kubernetes schedules containers onto nodes according to their resource requests.",
		"A message broker decouples the producers of events from their consumers.",
		"Error: connection refused while connecting to 127.0.0.1:4222",
		"func main() { fmt.Println(\"hello, world\") }",
		"The Treaty of Westphalia ended the Thirty Years' War in 1648.",
		"Shakespeare wrote Hamlet around the year 1600.",
		"Water boils at 100 degrees Celsius at sea level.",
		"The speed of light in a vacuum is about 299,792 kilometres per second.",
		"Quelle est la meilleure saison pour visiter Kyoto ?",
		"La recherche sémantique compare le sens des textes plutôt que leurs mots.",
		"Wie funktioniert eine Wärmepumpe im Winter?",
		"Die Bundesbahn fährt stündlich zwischen Berlin und Hamburg.",
		"¿Cuántos habitantes tiene Madrid?",
		"El aprendizaje automático necesita datos etiquetados para entrenar un clasificador.",
		"東京は日本の首都です。",
		"搜索引擎根据相关性对文档进行排序。",
		"Москва — столица России.",
		"ما هي أفضل طريقة لتعلم لغة جديدة؟",
		"yes",
		"404",
		"North Atlantic right whale",
		"cheap flights from London to New York in December",
		"The invoice total is $1,284.50, due within thirty days of receipt.",
		"Patients were randomised to receive either the drug or a placebo for twelve weeks.",
		"The defendant appealed the ruling to the supreme court, arguing the search was unlawful.",
		"Customers who bought this item also bought a charging cable and a protective case.",
		"Once upon a time, in a kingdom by the sea, there lived a princess who loved to read about the stars, the tides, " +
			"the ships that came and went, and the distant lands whose names she could only guess from the maps in her " +
			"father's library, until one morning a sailor brought her a book written in a language nobody could read.",
		"Release notes: the worker now acknowledges messages asynchronously, retries failed acknowledgements with " +
			"backoff, re-creates a consumer whose state regressed after a server restart, bounds the identifiers of " +
			"documents, and turns a document that panics the pipeline into an error result instead of a crash.",
	}
}
