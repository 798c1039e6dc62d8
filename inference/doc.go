// Package inference turns text into what Elasticsearch's elasticsearch
// service returns: dense embeddings, sparse (SPLADE/ELSER-style) embeddings
// and rerank scores. It owns the ONNX Runtime environment and sessions, the
// model artifact format and its validation, token-budget batching, pooling
// and the three task heads. Tokenization is the pure-Go subpackage
// tokenizer. It knows nothing of NATS or HTTP: the pipeline calls it.
package inference
