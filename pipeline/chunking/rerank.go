package chunking

import (
	"math"

	"github.com/jetinfer/jetinfer/config"
)

// The Elastic reranker's budget, as ChunkingSettingsBuilder has it: the
// tokens the model reads, those its special tokens take, and the words a
// token is reckoned to be.
const (
	rerankerTokenLimit      = 512
	rerankerExtraTokenCount = 3
	wordsPerToken           = float32(0.75)
)

// RerankSettings are the chunking settings Elasticsearch uses for the
// documents of a rerank with long_document_strategy chunk
// (ChunkingSettingsBuilder.buildChunkingSettingsForElasticRerank): sentence
// chunks of what the model's 512 tokens leave beside the query, at least
// half of them, with one sentence of overlap. The arithmetic is Java's,
// float division included, so that the word counts match.
func RerankSettings(query string) config.ChunkingSettings {
	queryWords := segmentWords(query).countWords(0, len(query))
	queryTokens := math.Ceil(float64(float32(queryWords) / wordsPerToken))
	withFullQuery := float64(rerankerTokenLimit-rerankerExtraTokenCount) - queryTokens
	maxTokens := math.Floor(float64(float32(rerankerTokenLimit) / 2))
	if withFullQuery > maxTokens {
		maxTokens = withFullQuery
	}
	return config.ChunkingSettings{Strategy: config.ChunkSentence, MaxChunkSize: int(maxTokens * float64(wordsPerToken)), SentenceOverlap: 1}
}
