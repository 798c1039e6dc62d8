package test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/inference/tokenizer"
)

// TestOpenAIEmbeddingsWithOfficialClient: the official OpenAI Go SDK,
// pointed at jetinfer's /v1, gets the engine's embeddings of a
// text_embedding endpoint (float and base64), Matryoshka truncation
// normalized again, the tokens the tokenizer counts, the endpoints as
// models, and OpenAI's errors.
func TestOpenAIEmbeddingsWithOfficialClient(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/text_embedding/dense", e5Body).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/sparse_embedding/sparse", elserBody).mustStatus(t, 200)
	ctx := context.Background()
	client := openai.NewClient(option.WithBaseURL(n.base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))

	inputs := []string{"hello world", "naïve café 🙂", "the quick brown fox jumps over the lazy dog"}
	want, err := directModel(t, ".multilingual-e5-small").Embed(ctx, inputs, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(tokenizer.Config{Path: testTokenizer, MaxLength: 512})
	if err != nil {
		t.Fatal(err)
	}
	tokens := 0
	for _, in := range inputs {
		e, err := tok.Encode(in)
		if err != nil {
			t.Fatal(err)
		}
		tokens += len(e.IDs)
	}

	resp, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "dense", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != "dense" || resp.Usage.PromptTokens != int64(tokens) || resp.Usage.TotalTokens != int64(tokens) || len(resp.Data) != len(inputs) {
		t.Fatalf("response model %q, usage %+v, %d embeddings; want dense, %d tokens, %d", resp.Model, resp.Usage, len(resp.Data), tokens, len(inputs))
	}
	for i, d := range resp.Data {
		if d.Index != int64(i) || !equalFloat32(d.Embedding, want[i]) {
			t.Fatalf("embedding %d (index %d) = %v…; want the engine's %v…", i, d.Index, d.Embedding[:3], want[i][:3])
		}
	}

	// base64: little-endian float32s, the bits of the engine's values.
	resp, err = client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "dense",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(inputs[1])}, EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64})
	if err != nil {
		t.Fatal(err)
	}
	var encoded string
	if err := json.Unmarshal([]byte(resp.Data[0].JSON.Embedding.Raw()), &encoded); err != nil {
		t.Fatalf("base64 embedding %s: %v", resp.Data[0].JSON.Embedding.Raw(), err)
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(raw) != 4*len(want[1]) {
		t.Fatalf("base64 embedding: %d bytes, %v; want %d", len(raw), err, 4*len(want[1]))
	}
	for j, x := range want[1] {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])); got != x {
			t.Fatalf("base64 value %d = %v; want %v", j, got, x)
		}
	}

	// dimensions: the first 16 values, normalized again (the model
	// normalizes), as if truncated before its normalization.
	resp, err = client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "dense",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(inputs[0])}, Dimensions: openai.Int(16)})
	if err != nil {
		t.Fatal(err)
	}
	var norm float64
	for _, x := range want[0][:16] {
		norm += float64(x) * float64(x)
	}
	norm = math.Sqrt(norm)
	got := resp.Data[0].Embedding
	if len(got) != 16 {
		t.Fatalf("dimensions 16 gave %d values", len(got))
	}
	for j, x := range want[0][:16] {
		if math.Abs(got[j]-float64(x)/norm) > 1e-6 {
			t.Fatalf("truncated value %d = %v; want %v", j, got[j], float64(x)/norm)
		}
	}

	// 70 inputs go to the workers in two parts: the tokens of both count,
	// and each part truncates.
	many := make([]string, 70)
	manyTokens := 0
	for i := range many {
		many[i] = fmt.Sprintf("input number %d of a large request", i)
		e, err := tok.Encode(many[i])
		if err != nil {
			t.Fatal(err)
		}
		manyTokens += len(e.IDs)
	}
	wantMany, err := directModel(t, ".multilingual-e5-small").Embed(ctx, many, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "dense",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: many}, Dimensions: openai.Int(8)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != len(many) || resp.Usage.PromptTokens != int64(manyTokens) {
		t.Fatalf("70 inputs: %d embeddings, %d tokens; want 70, %d", len(resp.Data), resp.Usage.PromptTokens, manyTokens)
	}
	for i, d := range resp.Data {
		var norm float64
		for _, x := range wantMany[i][:8] {
			norm += float64(x) * float64(x)
		}
		norm = math.Sqrt(norm)
		for j, x := range wantMany[i][:8] {
			if len(d.Embedding) != 8 || math.Abs(d.Embedding[j]-float64(x)/norm) > 1e-6 {
				t.Fatalf("input %d of 70: %v; want the first 8 values of %v normalized", i, d.Embedding, wantMany[i][:8])
			}
		}
	}

	// The endpoints are the models.
	models, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range models.Data {
		ids = append(ids, m.ID)
	}
	for _, id := range []string{"dense", "sparse", config.DefaultE5ID} {
		if !strings.Contains(","+strings.Join(ids, ",")+",", ","+id+",") {
			t.Fatalf("models %v; want %s among them", ids, id)
		}
	}
	if m, err := client.Models.Get(ctx, "dense"); err != nil || m.ID != "dense" || m.OwnedBy != "jetinfer" {
		t.Fatalf("model dense = %+v, %v", m, err)
	}

	// OpenAI's errors, as the SDK reads them.
	for _, c := range []struct {
		params                    openai.EmbeddingNewParams
		status                    int
		code, param, message, typ string
	}{
		{openai.EmbeddingNewParams{Model: "nope", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}},
			404, "model_not_found", "model", "The model `nope` does not exist or you do not have access to it.", "invalid_request_error"},
		{openai.EmbeddingNewParams{Model: "sparse", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}},
			400, "model_not_supported", "model", "The model `sparse` does not support embeddings: its task type is [sparse_embedding], not [text_embedding].", "invalid_request_error"},
		{openai.EmbeddingNewParams{Model: "dense", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}, Dimensions: openai.Int(33)},
			400, "", "", "[dimensions] must be at most [32], the model's embedding size, but was [33]", "invalid_request_error"},
		{openai.EmbeddingNewParams{Model: "dense", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("")}},
			400, "", "input", "'$.input' is invalid: an input must not be empty.", "invalid_request_error"},
		{openai.EmbeddingNewParams{Model: "dense", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{1, 2}}},
			400, "", "input", "'$.input[0]' is invalid: inputs must be strings (token arrays are not accepted: endpoints tokenize their own input).", "invalid_request_error"},
	} {
		_, err := client.Embeddings.New(ctx, c.params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("model %s: error %v; want an API error", c.params.Model, err)
		}
		if apiErr.StatusCode != c.status || apiErr.Code != c.code || apiErr.Param != c.param || apiErr.Message != c.message || apiErr.Type != c.typ {
			t.Fatalf("model %s: %d %s; want %d code %q param %q type %q message %q", c.params.Model, apiErr.StatusCode, apiErr.RawJSON(), c.status, c.code, c.param, c.typ, c.message)
		}
	}
	// Unknown fields are refused before the others are read.
	n.do(t, "POST", "/v1/embeddings", `{"model":"dense","input":"x","encoding_format":"int8","extra":1}`).expectOther(t, 400,
		`{"error":{"message":"Unrecognized request argument supplied: extra","type":"invalid_request_error","param":null,"code":null}}`)
	n.do(t, "POST", "/v1/embeddings", `{"model":"dense","input":"x","encoding_format":"int8"}`).expectOther(t, 400,
		`{"error":{"message":"'int8' is not one of ['float', 'base64'] - 'encoding_format'","type":"invalid_request_error","param":"encoding_format","code":null}}`)
	n.do(t, "POST", "/v1/embeddings", `{"input":"x"}`).expectOther(t, 400,
		`{"error":{"message":"you must provide a model parameter","type":"invalid_request_error","param":"model","code":null}}`)
}

// expectOther checks the status and the exact body of another API's
// answer, which must not claim to be Elasticsearch.
func (r response) expectOther(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("response = %d %s\nwant     %d %s", r.status, r.body, status, body)
	}
	if got := r.header.Get("X-Elastic-Product"); got != "" {
		t.Errorf("X-Elastic-Product = %q on another API's answer", got)
	}
}

// TestRerankCohereAndJinaRoutes: /v2/rerank and /v1/rerank rank with the
// endpoint's model exactly as POST _inference does, in Cohere's response
// shape (with Jina's model field), top_n and return_documents honoured, and
// answer Cohere's error body.
func TestRerankCohereAndJinaRoutes(t *testing.T) {
	n := startNode(t, nil)
	n.do(t, "PUT", "/_inference/rerank/ranker", rerankBody).mustStatus(t, 200)
	n.do(t, "PUT", "/_inference/text_embedding/dense", e5Body).mustStatus(t, 200)
	docs := []string{"a quick brown fox", "a lazy dog", "seven wizards", "the fox jumps"}
	esAnswer := n.do(t, "POST", "/_inference/rerank/ranker", `{"query":"quick fox","input":["a quick brown fox","a lazy dog","seven wizards","the fox jumps"],"top_n":2}`)
	esAnswer.mustStatus(t, 200)
	var es struct {
		Rerank []struct {
			Index int     `json:"index"`
			Score float64 `json:"relevance_score"`
		} `json:"rerank"`
	}
	if err := json.Unmarshal([]byte(esAnswer.body), &es); err != nil || len(es.Rerank) != 2 {
		t.Fatalf("ES rerank %s: %v", esAnswer.body, err)
	}
	type result struct {
		Index    int     `json:"index"`
		Score    float64 `json:"relevance_score"`
		Document *struct {
			Text string `json:"text"`
		} `json:"document"`
	}
	var got struct {
		ID      string   `json:"id"`
		Model   string   `json:"model"`
		Results []result `json:"results"`
		Meta    struct {
			APIVersion struct {
				Version string `json:"version"`
			} `json:"api_version"`
		} `json:"meta"`
	}
	for _, c := range []struct {
		path, body, version string
		documents           bool
	}{
		{"/v2/rerank", `{"model":"ranker","query":"quick fox","documents":["a quick brown fox","a lazy dog","seven wizards","the fox jumps"],"top_n":2}`, "2", false},
		// Jina's and Cohere v1's documents may be objects with a text.
		{"/v1/rerank", `{"model":"ranker","query":"quick fox","documents":[{"text":"a quick brown fox"},"a lazy dog",{"text":"seven wizards"},"the fox jumps"],"top_n":2,"return_documents":true}`, "1", true},
	} {
		r := n.do(t, "POST", c.path, c.body)
		r.mustStatus(t, 200)
		got.Results = nil
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("%s: %s: %v", c.path, r.body, err)
		}
		if got.Model != "ranker" || got.ID == "" || got.Meta.APIVersion.Version != c.version || len(got.Results) != 2 {
			t.Fatalf("%s: %s", c.path, r.body)
		}
		for i, res := range got.Results {
			if res.Index != es.Rerank[i].Index || res.Score != es.Rerank[i].Score {
				t.Fatalf("%s result %d = %+v; want POST _inference's %+v", c.path, i, res, es.Rerank[i])
			}
			if (res.Document != nil) != c.documents || c.documents && res.Document.Text != docs[res.Index] {
				t.Fatalf("%s result %d document %+v; want it %v", c.path, i, res.Document, c.documents)
			}
		}
	}
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"model":"ranker","query":"","documents":["a"]}`, 400, `{"message":"invalid request: query must not be empty"}`},
		{`{"model":"ranker","query":"q","documents":[]}`, 400, `{"message":"invalid request: list of documents must not be empty"}`},
		{`{"model":"ranker","query":"q","documents":["a"],"top_n":0}`, 400, `{"message":"invalid request: top_n must be greater than 0, got 0"}`},
		{`{"model":"nope","query":"q","documents":["a"]}`, 404, `{"message":"model 'nope' not found, make sure the model name is an inference endpoint id"}`},
		{`{"model":"dense","query":"q","documents":["a"]}`, 400, `{"message":"invalid request: model 'dense' does not rerank: its task type is [text_embedding], not [rerank]"}`},
	} {
		n.do(t, "POST", "/v2/rerank", c.body).expectOther(t, c.status, c.want)
	}
	// The router's own failures come in Cohere's body too.
	r := n.do(t, "GET", "/v2/rerank", "")
	r.expectOther(t, http.StatusMethodNotAllowed, `{"message":"Incorrect HTTP method for uri [/v2/rerank] and method [GET], allowed: [POST]"}`)
	if r.header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q; want POST", r.header.Get("Allow"))
	}
}

// equalFloat32 reports whether the SDK's float64s are exactly vals.
func equalFloat32(got []float64, vals []float32) bool {
	if len(got) != len(vals) {
		return false
	}
	for i, x := range vals {
		if float32(got[i]) != x {
			return false
		}
	}
	return true
}
