package inferapi

// Options are what the other APIs' routes (OpenAI, Cohere and the like)
// ask of an inference beyond a POST _inference body; the NATS protocol
// carries them in headers, so that a request body stays exactly
// Elasticsearch's.
type Options struct {
	// Dimensions, when positive, keeps the first Dimensions values of each
	// dense embedding (Matryoshka truncation), normalized again when the
	// model normalizes its embeddings: the same as truncating before the
	// normalization.
	Dimensions int
	// CountTokens asks for the tokens a dense model read (special tokens
	// and prefixes included, after truncation), which OpenAI's usage
	// reports.
	CountTokens bool
}

// Result is an inference's answer: the POST _inference response body and,
// for a dense model, the tokens read (sent on when Options.CountTokens
// asks).
type Result struct {
	Body   []byte
	Tokens int
}
