package inference

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/inference/artifact"
)

// writeFiles creates a model directory holding the given files (model.onnx
// and tokenizer.json are placeholders unless given).
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{artifact.ONNXFile: "onnx", artifact.TokenizerFile: "{}"}
	for k, v := range files {
		all[k] = v
	}
	for name, content := range all {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var (
	bertInputs = []tensorInfo{
		{Name: "input_ids", Type: "Int64", Dims: []int64{-1, -1}},
		{Name: "attention_mask", Type: "Int64", Dims: []int64{-1, -1}},
		{Name: "token_type_ids", Type: "Int64", Dims: []int64{-1, -1}},
	}
	hiddenOut = []tensorInfo{{Name: "last_hidden_state", Type: "Float", Dims: []int64{-1, -1, 384}}}
	mlmOut    = []tensorInfo{{Name: "logits", Type: "Float", Dims: []int64{-1, -1, 30522}}}
	clsOut    = []tensorInfo{{Name: "logits", Type: "Float", Dims: []int64{-1, 1}}}
)

func TestResolveFromSentenceTransformersFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"modules.json": `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
			{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
			{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]`,
		"1_Pooling/config.json":             `{"word_embedding_dimension":384,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true}`,
		"sentence_bert_config.json":         `{"max_seq_length":256,"do_lower_case":false}`,
		"config_sentence_transformers.json": `{"prompts":{"query":"query: ","passage":"passage: "},"similarity_fn_name":"cosine"}`,
		"config.json":                       `{"architectures":["XLMRobertaModel"],"model_type":"xlm-roberta","max_position_embeddings":514,"hidden_size":384}`,
	})
	a, err := readArtifact(dir)
	if err != nil {
		t.Fatal(err)
	}
	noTypes := bertInputs[:2]
	s, err := resolve(a, noTypes, hiddenOut, 250002)
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		Task: TaskTextEmbedding, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "attention_mask"},
		Output: "last_hidden_state", Pooling: PoolMean, Normalize: true, MaxSequenceLength: 256,
		Prefixes: PrefixStrings{Search: "query: ", Ingest: "passage: "}, Dimensions: 384, Similarity: "cosine",
		Prompts: map[string]string{"query": "query: ", "passage": "passage: "},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("resolve =\n%+v\nwant\n%+v", s, want)
	}
}

func TestResolveFromHuggingFaceConfig(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		outputs []tensorInfo
		want    Spec
	}{
		{
			name:    "masked LM is sparse",
			files:   map[string]string{"config.json": `{"architectures":["BertForMaskedLM"],"max_position_embeddings":512}`},
			outputs: mlmOut,
			want: Spec{Task: TaskSparseEmbedding, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids"},
				Output: "logits", MaxSequenceLength: 512},
		},
		{
			name:    "sequence classification is rerank, sigmoid on request",
			files:   map[string]string{"config.json": `{"architectures":["XLMRobertaForSequenceClassification"],"model_type":"xlm-roberta","max_position_embeddings":514}`, artifact.ConfigFile: `{"rerank_scores":"sigmoid"}`},
			outputs: clsOut,
			want: Spec{Task: TaskRerank, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids"},
				Output: "logits", MaxSequenceLength: 512, RerankScores: ScoreSigmoid},
		},
		{
			name:    "TensorFlow-era names: input_mask, segment_ids, output (SPLADE_PP's export)",
			files:   map[string]string{artifact.ConfigFile: `{"task_type":"sparse_embedding"}`},
			outputs: []tensorInfo{{Name: "output", Type: "Float", Dims: []int64{-1, -1, 30522}}},
			want: Spec{Task: TaskSparseEmbedding, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "input_mask", TokenTypeIDs: "segment_ids"},
				Output: "output", MaxSequenceLength: 512},
		},
		{
			name:    "jetinfer.json alone: CLS pooling, E5 prefixes, no normalisation",
			files:   map[string]string{artifact.ConfigFile: `{"task_type":"text_embedding","pooling":"cls","normalize":false,"max_sequence_length":128,"prefix_strings":{"search":"q: "},"similarity":"l2_norm"}`},
			outputs: []tensorInfo{{Name: "last_hidden_state", Type: "Float", Dims: []int64{-1, -1, -1}}},
			want: Spec{Task: TaskTextEmbedding, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids"},
				Output: "last_hidden_state", Pooling: PoolCLS, MaxSequenceLength: 128, Prefixes: PrefixStrings{Search: "q: "}, Prompts: map[string]string{"query": "q: "}, Similarity: "l2_norm"},
		},
		{
			name:    "already pooled output",
			files:   map[string]string{artifact.ConfigFile: `{"task_type":"text_embedding","output":"sentence_embedding","normalize":true}`},
			outputs: []tensorInfo{{Name: "sentence_embedding", Type: "Float", Dims: []int64{-1, 768}}},
			want: Spec{Task: TaskTextEmbedding, Inputs: InputNames{InputIDs: "input_ids", AttentionMask: "attention_mask", TokenTypeIDs: "token_type_ids"},
				Output: "sentence_embedding", OutputPooled: true, Normalize: true, MaxSequenceLength: 512, Dimensions: 768, Similarity: "dot_product"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := readArtifact(writeFiles(t, tt.files))
			if err != nil {
				t.Fatal(err)
			}
			inputs := bertInputs
			if tt.want.Inputs.AttentionMask == "input_mask" {
				inputs = []tensorInfo{
					{Name: "input_ids", Type: "Int64", Dims: []int64{-1, -1}},
					{Name: "input_mask", Type: "Int64", Dims: []int64{-1, -1}},
					{Name: "segment_ids", Type: "Int64", Dims: []int64{-1, -1}},
				}
			}
			s, err := resolve(a, inputs, tt.outputs, 30522)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s, tt.want) {
				t.Errorf("resolve =\n%+v\nwant\n%+v", s, tt.want)
			}
		})
	}
}

func TestResolveRejects(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		inputs  []tensorInfo
		outputs []tensorInfo
		want    string
	}{
		{"no task", nil, bertInputs, hiddenOut, "cannot tell the model's task: set task_type in jetinfer.json"},
		{"unknown task", map[string]string{artifact.ConfigFile: `{"task_type":"completion"}`}, bertInputs, hiddenOut,
			`jetinfer.json: unknown task_type "completion" (text_embedding, sparse_embedding or rerank)`},
		{"unknown config field", map[string]string{artifact.ConfigFile: `{"task_type":"rerank","top_k":3}`}, bertInputs, clsOut,
			`jetinfer.json: json: unknown field "top_k"`},
		{"missing input", map[string]string{artifact.ConfigFile: `{"task_type":"rerank"}`}, bertInputs[:1], clsOut,
			`the graph has no input "attention_mask" (it has ["input_ids"])`},
		{"configured input missing", map[string]string{artifact.ConfigFile: `{"task_type":"rerank","inputs":{"token_type_ids":"segment_ids"}}`}, bertInputs, clsOut,
			`the graph has no input "segment_ids" (it has ["input_ids", "attention_mask", "token_type_ids"])`},
		{"int32 inputs", map[string]string{artifact.ConfigFile: `{"task_type":"rerank"}`}, []tensorInfo{{Name: "input_ids", Type: "Int32", Dims: []int64{-1, -1}}, bertInputs[1]}, clsOut,
			`input "input_ids" is Int32; jetinfer feeds int64`},
		{"extra input", map[string]string{artifact.ConfigFile: `{"task_type":"rerank"}`}, append(bertInputs[:3:3], tensorInfo{Name: "past_key_values.0.key", Type: "Float", Dims: []int64{-1, -1, -1, -1}}), clsOut,
			`the graph needs input "past_key_values.0.key", which jetinfer cannot feed`},
		{"bad padding side", map[string]string{artifact.ConfigFile: `{"task_type":"text_embedding"}`, artifact.TokenizerConfigFile: `{"padding_side":"middle"}`}, bertInputs, hiddenOut,
			`padding_side "middle" must be left or right`},
		{"unknown default prompt", map[string]string{"modules.json": `[]`, "config_sentence_transformers.json": `{"prompts":{"query":"q: "},"default_prompt_name":"document"}`},
			bertInputs, hiddenOut, `config_sentence_transformers.json: default_prompt_name "document" is not one of its prompts`},
		{"missing output", map[string]string{artifact.ConfigFile: `{"task_type":"sparse_embedding"}`}, bertInputs, hiddenOut,
			`the graph has no output "logits" (it has ["last_hidden_state"])`},
		{"vocabulary mismatch", map[string]string{artifact.ConfigFile: `{"task_type":"sparse_embedding"}`}, bertInputs,
			[]tensorInfo{{Name: "logits", Type: "Float", Dims: []int64{-1, -1, 1000}}},
			`output "logits" has 1000 logits per token but the tokenizer has 30522 tokens`},
		{"multi-label cross-encoder", map[string]string{artifact.ConfigFile: `{"task_type":"rerank"}`}, bertInputs,
			[]tensorInfo{{Name: "logits", Type: "Float", Dims: []int64{-1, 3}}},
			`output "logits" has shape [-1 3]; rerank needs one logit per input, [batch, 1]`},
		{"dimension mismatch", map[string]string{artifact.ConfigFile: `{"task_type":"text_embedding","dimensions":768}`}, bertInputs, hiddenOut,
			"the embedding size is inconsistent: the graph, jetinfer.json and the sentence-transformers / Hugging Face configs say [384 768]"},
		{"pooling for sparse", map[string]string{artifact.ConfigFile: `{"task_type":"sparse_embedding","pooling":"mean"}`}, bertInputs, mlmOut,
			"jetinfer.json: pooling, normalize, dimensions and rerank_scores do not apply to sparse_embedding"},
		{"unsupported pooling", map[string]string{
			"modules.json":          `[{"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]`,
			"1_Pooling/config.json": `{"pooling_mode_max_tokens":true}`,
		}, bertInputs, hiddenOut, "1_Pooling/config.json: only mean, CLS or last-token pooling is supported"},
		{"dense module", map[string]string{"modules.json": `[{"path":"2_Dense","type":"sentence_transformers.models.Dense"}]`}, bertInputs, hiddenOut,
			"modules.json: module 2_Dense (sentence_transformers.models.Dense) is not supported; export it into the ONNX graph"},
		{"bad similarity", map[string]string{artifact.ConfigFile: `{"task_type":"text_embedding","similarity":"hamming"}`}, bertInputs, hiddenOut,
			`similarity "hamming" must be cosine, dot_product or l2_norm`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := readArtifact(writeFiles(t, tt.files))
			if err == nil {
				_, err = resolve(a, tt.inputs, tt.outputs, 30522)
			}
			if !errors.Is(err, ErrInvalidModel) || err.Error() != "invalid model: "+tt.want {
				t.Fatalf("error = %v; want invalid model: %s", err, tt.want)
			}
		})
	}
}

func TestReadArtifactNeedsFiles(t *testing.T) {
	dir := t.TempDir()
	_, err := readArtifact(dir)
	if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), "model.onnx") {
		t.Errorf("readArtifact(empty dir) = %v", err)
	}
}
