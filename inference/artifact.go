package inference

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jetinfer/jetinfer/inference/artifact"
)

// ErrInvalidModel is wrapped by every error about a model artifact that
// cannot serve: missing files, inconsistent settings, a graph whose inputs
// or outputs do not match its config.
var ErrInvalidModel = errors.New("invalid model")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidModel, fmt.Sprintf(format, args...))
}

// Task is what a model computes.
type Task string

// The tasks of the elasticsearch inference service.
const (
	TaskTextEmbedding   Task = "text_embedding"
	TaskSparseEmbedding Task = "sparse_embedding"
	TaskRerank          Task = "rerank"
)

// Pooling turns per-token hidden states into one vector.
type Pooling string

// Poolings jetinfer implements.
const (
	PoolMean      Pooling = "mean"       // mean over the attention mask
	PoolCLS       Pooling = "cls"        // the first token's state
	PoolLastToken Pooling = "last_token" // the last real token's state, as decoder embedding models pool
)

// ScoreFunction maps a cross-encoder's logit to its relevance score.
type ScoreFunction string

// Rerank score functions.
const (
	ScoreLogit   ScoreFunction = "logit"
	ScoreSigmoid ScoreFunction = "sigmoid"
)

// PrefixStrings are prepended to inputs by input type, as Elasticsearch's
// trained-model prefix_strings (E5 uses "query: " and "passage: ").
type PrefixStrings struct {
	Search string `json:"search,omitempty"`
	Ingest string `json:"ingest,omitempty"`
}

// InputNames names the graph inputs jetinfer feeds.
type InputNames struct {
	InputIDs      string `json:"input_ids,omitempty"`
	AttentionMask string `json:"attention_mask,omitempty"`
	// TokenTypeIDs is empty for models without token types (XLM-RoBERTa).
	TokenTypeIDs string `json:"token_type_ids,omitempty"`
	// PositionIDs is empty for graphs that number positions themselves;
	// decoders read them (left padding shifts them).
	PositionIDs string `json:"position_ids,omitempty"`
}

// ModelConfig is the content of jetinfer.json. Every field is optional
// where the artifact's other files or the graph itself say it: a model
// exported from the Hugging Face Hub with its sentence-transformers files
// needs no jetinfer.json at all.
type ModelConfig struct {
	TaskType          Task           `json:"task_type,omitempty"`
	Inputs            InputNames     `json:"inputs,omitzero"`
	Output            string         `json:"output,omitempty"`
	Pooling           Pooling        `json:"pooling,omitempty"`
	Normalize         *bool          `json:"normalize,omitempty"`
	MaxSequenceLength int            `json:"max_sequence_length,omitempty"`
	PrefixStrings     *PrefixStrings `json:"prefix_strings,omitempty"`
	Dimensions        int            `json:"dimensions,omitempty"`
	Similarity        string         `json:"similarity,omitempty"`
	RerankScores      ScoreFunction  `json:"rerank_scores,omitempty"`
	// PaddingSide is left or right (tokenizer_config.json's padding_side
	// when absent; right when neither says).
	PaddingSide string `json:"padding_side,omitempty"`
}

// modelDir is what a model directory says about itself, before the graph
// is consulted.
type modelDir struct {
	dir    string
	config ModelConfig
	hf     hfConfig
	st     stConfig
	// paddingSide is tokenizer_config.json's.
	paddingSide string
}

// hfConfig is the part of a Hugging Face config.json jetinfer reads.
type hfConfig struct {
	Architectures         []string          `json:"architectures"`
	ModelType             string            `json:"model_type"`
	MaxPositionEmbeddings int               `json:"max_position_embeddings"`
	HiddenSize            int               `json:"hidden_size"`
	VocabSize             int               `json:"vocab_size"`
	NumLabels             int               `json:"num_labels"`
	ID2Label              map[string]string `json:"id2label"`
	PadTokenID            *int              `json:"pad_token_id"`
}

// stConfig is what the sentence-transformers files say.
type stConfig struct {
	present      bool
	pooling      Pooling
	normalize    bool
	maxSeqLength int
	prompts      PrefixStrings
	named        map[string]string // every prompt, by name
	// defaultPrompt is what sentence-transformers puts before an input
	// that names no prompt (default_prompt_name's).
	defaultPrompt string
	similarity    string
	dimension     int
}

// readArtifact reads the JSON files of a model directory.
func readArtifact(dir string) (modelDir, error) {
	a := modelDir{dir: dir}
	for _, f := range artifact.Required() {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return a, invalid("%s: %v", f, err)
		}
	}
	if err := readJSON(filepath.Join(dir, artifact.ConfigFile), &a.config, true); err != nil {
		return a, err
	}
	if err := readJSON(filepath.Join(dir, artifact.HFConfigFile), &a.hf, false); err != nil {
		return a, err
	}
	var tokCfg struct {
		PaddingSide string `json:"padding_side"`
	}
	if err := readJSON(filepath.Join(dir, artifact.TokenizerConfigFile), &tokCfg, false); err != nil {
		return a, err
	}
	a.paddingSide = tokCfg.PaddingSide
	var err error
	a.st, err = readSentenceTransformers(dir)
	return a, err
}

// readJSON decodes path into v; a missing file leaves v untouched. strict
// rejects unknown fields (jetinfer's own file); other tools' files are read
// leniently.
func readJSON(path string, v any, strict bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return invalid("%s: %v", filepath.Base(path), err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return invalid("%s: %v", filepath.Base(path), err)
	}
	return nil
}

type stModule struct {
	Path string `json:"path"`
	Type string `json:"type"`
}

// readSentenceTransformers reads modules.json and the module configs it
// lists, so that pooling, normalisation, the sequence length and the query /
// passage prompts of a sentence-transformers model need no other config.
func readSentenceTransformers(dir string) (stConfig, error) {
	var st stConfig
	var modules []stModule
	if err := readJSON(filepath.Join(dir, "modules.json"), &modules, false); err != nil {
		return st, err
	}
	if modules == nil {
		return st, nil
	}
	st.present = true
	for _, m := range modules {
		switch m.Type {
		case "sentence_transformers.models.Transformer":
		case "sentence_transformers.models.Pooling":
			var p struct {
				Dimension int  `json:"word_embedding_dimension"`
				CLS       bool `json:"pooling_mode_cls_token"`
				Mean      bool `json:"pooling_mode_mean_tokens"`
				Max       bool `json:"pooling_mode_max_tokens"`
				MeanSqrt  bool `json:"pooling_mode_mean_sqrt_len_tokens"`
				Weighted  bool `json:"pooling_mode_weightedmean_tokens"`
				LastToken bool `json:"pooling_mode_lasttoken"`
			}
			if err := readJSON(filepath.Join(dir, m.Path, artifact.HFConfigFile), &p, false); err != nil {
				return st, err
			}
			st.dimension = p.Dimension
			switch {
			case p.Max || p.MeanSqrt || p.Weighted || btoi(p.CLS)+btoi(p.Mean)+btoi(p.LastToken) > 1:
				return st, invalid("%s/config.json: only mean, CLS or last-token pooling is supported", m.Path)
			case p.CLS:
				st.pooling = PoolCLS
			case p.Mean:
				st.pooling = PoolMean
			case p.LastToken:
				st.pooling = PoolLastToken
			}
		case "sentence_transformers.models.Normalize":
			st.normalize = true
		default:
			return st, invalid("modules.json: module %s (%s) is not supported; export it into the ONNX graph", m.Path, m.Type)
		}
	}
	var bert struct {
		MaxSeqLength int `json:"max_seq_length"`
	}
	if err := readJSON(filepath.Join(dir, "sentence_bert_config.json"), &bert, false); err != nil {
		return st, err
	}
	st.maxSeqLength = bert.MaxSeqLength
	var cfg struct {
		Prompts           map[string]string `json:"prompts"`
		DefaultPromptName string            `json:"default_prompt_name"`
		Similarity        string            `json:"similarity_fn_name"`
	}
	if err := readJSON(filepath.Join(dir, "config_sentence_transformers.json"), &cfg, false); err != nil {
		return st, err
	}
	st.prompts = PrefixStrings{Search: cfg.Prompts["query"], Ingest: firstNonEmpty(cfg.Prompts["passage"], cfg.Prompts["document"])}
	st.named = cfg.Prompts
	if cfg.DefaultPromptName != "" {
		p, ok := cfg.Prompts[cfg.DefaultPromptName]
		if !ok {
			return st, invalid("config_sentence_transformers.json: default_prompt_name %q is not one of its prompts", cfg.DefaultPromptName)
		}
		st.defaultPrompt = p
	}
	st.similarity = cfg.Similarity
	return st, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// maxSequenceLength is the model's input limit in tokens, specials included.
func (a modelDir) maxSequenceLength() int {
	switch {
	case a.config.MaxSequenceLength > 0:
		return a.config.MaxSequenceLength
	case a.st.maxSeqLength > 0:
		return a.st.maxSeqLength
	case a.hf.MaxPositionEmbeddings > 0 && strings.Contains(a.hf.ModelType, "roberta"):
		// RoBERTa positions start after the padding index: 514 → 512.
		return a.hf.MaxPositionEmbeddings - 2
	case a.hf.MaxPositionEmbeddings > 0:
		return a.hf.MaxPositionEmbeddings
	}
	return 512
}

// tensorInfo is what resolve needs to know of a graph input or output.
type tensorInfo struct {
	Name string
	// Float or Int64; other element types are reported by name.
	Type string
	// Dims uses -1 for symbolic dimensions.
	Dims []int64
}

// Spec is a model's complete, validated serving description.
type Spec struct {
	Task   Task
	Inputs InputNames
	Output string
	// OutputPooled is true when a text_embedding graph already outputs one
	// vector per input ([batch, dims]).
	OutputPooled      bool
	Pooling           Pooling
	Normalize         bool
	MaxSequenceLength int
	Prefixes          PrefixStrings
	// Prompts are the sentence-transformers prompts by name (nil: none),
	// which a request may name (TEI's prompt_name); without them, the
	// Prefixes as the prompts query and passage.
	Prompts map[string]string
	// DefaultPrompt goes before an input whose type selects no prefix.
	DefaultPrompt string
	// PadLeft pads a batch's shorter inputs on the left (padding_side).
	PadLeft bool
	// Dimensions is 0 until known (measured at load when nothing says it).
	Dimensions   int
	Similarity   string
	RerankScores ScoreFunction
}

// resolve combines the artifact's files with the graph's real inputs and
// outputs into a Spec, or explains why they disagree.
func resolve(a modelDir, inputs, outputs []tensorInfo, vocabSize int) (Spec, error) {
	cfg := a.config
	s := Spec{Task: cfg.TaskType}
	if s.Task == "" {
		s.Task = a.inferTask()
	}
	switch s.Task {
	case TaskTextEmbedding, TaskSparseEmbedding, TaskRerank:
	case "":
		return s, invalid("cannot tell the model's task: set task_type in %s", artifact.ConfigFile)
	default:
		return s, invalid("%s: unknown task_type %q (text_embedding, sparse_embedding or rerank)", artifact.ConfigFile, s.Task)
	}

	if err := s.resolveInputs(cfg.Inputs, inputs); err != nil {
		return s, err
	}
	out, err := s.resolveOutput(cfg.Output, outputs)
	if err != nil {
		return s, err
	}

	s.MaxSequenceLength = a.maxSequenceLength()
	if s.MaxSequenceLength < 3 {
		return s, invalid("max_sequence_length %d is too small", s.MaxSequenceLength)
	}

	switch s.Task {
	case TaskTextEmbedding:
		if err := s.resolveEmbedding(a, out); err != nil {
			return s, err
		}
	case TaskSparseEmbedding:
		if cfg.Pooling != "" || cfg.Normalize != nil || cfg.Dimensions != 0 || cfg.RerankScores != "" {
			return s, invalid("%s: pooling, normalize, dimensions and rerank_scores do not apply to sparse_embedding", artifact.ConfigFile)
		}
		if len(out.Dims) != 3 {
			return s, invalid("output %q has %d dimensions; sparse_embedding needs [batch, sequence, vocabulary] logits", out.Name, len(out.Dims))
		}
		if v := out.Dims[2]; v > 0 && int(v) != vocabSize {
			return s, invalid("output %q has %d logits per token but the tokenizer has %d tokens", out.Name, v, vocabSize)
		}
	case TaskRerank:
		if cfg.Pooling != "" || cfg.Normalize != nil || cfg.Dimensions != 0 || cfg.PrefixStrings != nil {
			return s, invalid("%s: pooling, normalize, dimensions and prefix_strings do not apply to rerank", artifact.ConfigFile)
		}
		if len(out.Dims) != 2 || (out.Dims[1] > 0 && out.Dims[1] != 1) {
			return s, invalid("output %q has shape %v; rerank needs one logit per input, [batch, 1]", out.Name, out.Dims)
		}
		s.RerankScores = cfg.RerankScores
		switch s.RerankScores {
		case "":
			s.RerankScores = ScoreLogit
		case ScoreLogit, ScoreSigmoid:
		default:
			return s, invalid("%s: rerank_scores %q must be logit or sigmoid", artifact.ConfigFile, s.RerankScores)
		}
	}
	if cfg.PrefixStrings != nil {
		s.Prefixes = *cfg.PrefixStrings
	}
	s.DefaultPrompt = a.st.defaultPrompt
	switch side := cmp.Or(cfg.PaddingSide, a.paddingSide, "right"); side {
	case "left":
		s.PadLeft = true
	case "right":
	default:
		return s, invalid("padding_side %q must be left or right", side)
	}
	s.Prompts = a.st.named
	if s.Prompts == nil {
		// Prefixes from jetinfer.json are the same fact under the names
		// sentence-transformers gives them.
		for name, prompt := range map[string]string{"query": s.Prefixes.Search, "passage": s.Prefixes.Ingest} {
			if prompt != "" {
				if s.Prompts == nil {
					s.Prompts = map[string]string{}
				}
				s.Prompts[name] = prompt
			}
		}
	}
	return s, nil
}

// inferTask reads the task from what the directory holds: sentence-
// transformers modules mean embeddings; a Hugging Face masked-LM head means
// sparse (SPLADE); a sequence-classification head means a cross-encoder.
func (a modelDir) inferTask() Task {
	if a.st.present {
		return TaskTextEmbedding
	}
	for _, arch := range a.hf.Architectures {
		switch {
		case strings.HasSuffix(arch, "ForMaskedLM"):
			return TaskSparseEmbedding
		case strings.HasSuffix(arch, "ForSequenceClassification"):
			return TaskRerank
		case strings.HasSuffix(arch, "Model"):
			return TaskTextEmbedding
		}
	}
	return ""
}

func (s *Spec) resolveInputs(names InputNames, inputs []tensorInfo) error {
	byName := map[string]tensorInfo{}
	for _, in := range inputs {
		byName[in.Name] = in
	}
	// conventional lists the usual names, the first one named in errors;
	// BERT exports of TensorFlow lineage say input_mask and segment_ids.
	pick := func(configured string, conventional []string, required bool) (string, error) {
		name := configured
		if name == "" {
			name = conventional[0]
			for _, c := range conventional {
				if _, ok := byName[c]; ok {
					name = c
					break
				}
			}
		}
		in, ok := byName[name]
		switch {
		case !ok && (required || configured != ""):
			return "", invalid("the graph has no input %q (it has %s)", name, tensorNames(inputs))
		case !ok:
			return "", nil
		case in.Type != "Int64":
			return "", invalid("input %q is %s; jetinfer feeds int64", name, in.Type)
		case len(in.Dims) != 2:
			return "", invalid("input %q has %d dimensions; jetinfer feeds [batch, sequence]", name, len(in.Dims))
		}
		return name, nil
	}
	var err error
	if s.Inputs.InputIDs, err = pick(names.InputIDs, []string{"input_ids"}, true); err != nil {
		return err
	}
	if s.Inputs.AttentionMask, err = pick(names.AttentionMask, []string{"attention_mask", "input_mask"}, true); err != nil {
		return err
	}
	if s.Inputs.TokenTypeIDs, err = pick(names.TokenTypeIDs, []string{"token_type_ids", "segment_ids"}, false); err != nil {
		return err
	}
	if s.Inputs.PositionIDs, err = pick(names.PositionIDs, []string{"position_ids"}, false); err != nil {
		return err
	}
	for _, in := range inputs {
		if !slices.Contains([]string{s.Inputs.InputIDs, s.Inputs.AttentionMask, s.Inputs.TokenTypeIDs, s.Inputs.PositionIDs}, in.Name) {
			return invalid("the graph needs input %q, which jetinfer cannot feed", in.Name)
		}
	}
	return nil
}

func (s *Spec) resolveOutput(configured string, outputs []tensorInfo) (tensorInfo, error) {
	name := configured
	if name == "" {
		// The usual names by task, the first one named in errors; some
		// exports (SPLADE_PP's) call their logits "output".
		candidates := map[Task][]string{
			TaskTextEmbedding:   {"last_hidden_state", "sentence_embedding", "token_embeddings"},
			TaskSparseEmbedding: {"logits", "output"},
			TaskRerank:          {"logits", "output"},
		}[s.Task]
		name = candidates[0]
		for _, c := range candidates {
			if slices.ContainsFunc(outputs, func(o tensorInfo) bool { return o.Name == c }) {
				name = c
				break
			}
		}
	}
	i := slices.IndexFunc(outputs, func(o tensorInfo) bool { return o.Name == name })
	if i < 0 {
		return tensorInfo{}, invalid("the graph has no output %q (it has %s)", name, tensorNames(outputs))
	}
	out := outputs[i]
	if out.Type != "Float" {
		return out, invalid("output %q is %s; jetinfer reads float32", name, out.Type)
	}
	s.Output = name
	return out, nil
}

func (s *Spec) resolveEmbedding(a modelDir, out tensorInfo) error {
	cfg := a.config
	if cfg.RerankScores != "" {
		return invalid("%s: rerank_scores does not apply to text_embedding", artifact.ConfigFile)
	}
	switch len(out.Dims) {
	case 3:
	case 2:
		s.OutputPooled = true
	default:
		return invalid("output %q has %d dimensions; text_embedding needs [batch, sequence, hidden] or [batch, dims]", out.Name, len(out.Dims))
	}
	s.Pooling = cfg.Pooling
	if s.Pooling == "" {
		s.Pooling = a.st.pooling
	}
	switch {
	case s.OutputPooled && cfg.Pooling != "":
		return invalid("%s: output %q is already pooled; remove pooling", artifact.ConfigFile, out.Name)
	case s.OutputPooled:
		s.Pooling = ""
	case s.Pooling == "":
		s.Pooling = PoolMean
	case s.Pooling != PoolMean && s.Pooling != PoolCLS && s.Pooling != PoolLastToken:
		return invalid("%s: pooling %q must be mean, cls or last_token", artifact.ConfigFile, s.Pooling)
	}
	s.Normalize = a.st.normalize
	if cfg.Normalize != nil {
		s.Normalize = *cfg.Normalize
	}
	s.Prefixes = a.st.prompts

	known := []int{}
	if d := out.Dims[len(out.Dims)-1]; d > 0 {
		known = append(known, int(d))
	}
	if a.st.dimension > 0 {
		known = append(known, a.st.dimension)
	}
	if a.hf.HiddenSize > 0 && !s.OutputPooled {
		known = append(known, a.hf.HiddenSize)
	}
	if cfg.Dimensions > 0 {
		known = append(known, cfg.Dimensions)
	}
	for _, d := range known {
		if d != known[0] {
			return invalid("the embedding size is inconsistent: the graph, %s and the sentence-transformers / Hugging Face configs say %v", artifact.ConfigFile, known)
		}
	}
	if len(known) > 0 {
		s.Dimensions = known[0]
	}

	s.Similarity = firstNonEmpty(cfg.Similarity, a.st.similarity)
	switch s.Similarity {
	case "":
		s.Similarity = "cosine"
		if s.Normalize {
			// Unit vectors: the dot product is the cosine, and cheaper.
			s.Similarity = "dot_product"
		}
	case "cosine", "dot_product", "l2_norm":
	case "euclidean":
		s.Similarity = "l2_norm"
	case "dot":
		s.Similarity = "dot_product"
	default:
		return invalid("similarity %q must be cosine, dot_product or l2_norm", s.Similarity)
	}
	return nil
}

func tensorNames(ts []tensorInfo) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = fmt.Sprintf("%q", t.Name)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
