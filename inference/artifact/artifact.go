// Package artifact names the files of a model artifact directory: what
// jetinfer imports into its model store, caches on workers and loads. It is
// the one source of those names for the packages that handle artifacts
// without ONNX Runtime (the model store) and for the engine that reads
// them (package inference).
package artifact

// Files of a model artifact directory.
const (
	// ONNXFile is the model graph with its weights.
	ONNXFile = "model.onnx"
	// TokenizerFile is the Hugging Face tokenizer.
	TokenizerFile = "tokenizer.json"
	// ConfigFile is jetinfer's own, optional model config
	// (inference.ModelConfig).
	ConfigFile = "jetinfer.json"
	// HFConfigFile is the Hugging Face model config (config.json), optional.
	HFConfigFile = "config.json"
	// TokenizerConfigFile is the transformers tokenizer config, optional:
	// its padding_side says how a decoder's batches are padded.
	TokenizerConfigFile = "tokenizer_config.json"
)

// Required lists the files every artifact has.
func Required() []string { return []string{ONNXFile, TokenizerFile} }
