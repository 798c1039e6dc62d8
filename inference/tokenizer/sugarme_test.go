package tokenizer

// sugarme/tokenizer is only a test oracle: the tests compare our WordPiece matching with its WordPiece.Tokenize.
// Production code does not use it (it type-asserts the file's fields, log.Fatals on some inputs, and its
// Tokenize is cubic in the word length; see wordPieceModel).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	sugartok "github.com/sugarme/tokenizer"
	sugarmodel "github.com/sugarme/tokenizer/model"
	"github.com/sugarme/tokenizer/model/wordpiece"
	"github.com/sugarme/tokenizer/pretrained"
)

// sugarmeWordPiece loads a WordPiece model with sugarme from a (validated) model section: the tests' reference.
func sugarmeWordPiece(vocab json.RawMessage, unk, prefix string, maxChars int) (*wordpiece.WordPiece, error) {
	// Only the fields sugarme reads, with the types it asserts: max_input_chars_per_word and the vocab ids as
	// numbers.
	modelJSON := map[string]any{
		"type":                      "WordPiece",
		"unk_token":                 unk,
		"continuing_subword_prefix": prefix,
		"max_input_chars_per_word":  maxChars,
		"vocab":                     vocab,
	}
	sanitized, err := json.Marshal(map[string]any{"model": modelJSON})
	if err != nil {
		return nil, err
	}
	tk, err := sugarmeFromReader(sanitized)
	if err != nil {
		return nil, err
	}
	wp, ok := tk.GetModel().(*wordpiece.WordPiece)
	if !ok {
		return nil, fmt.Errorf("built a %T", tk.GetModel())
	}
	if prefix != "##" {
		// sugarme's createWordPiece drops continuing_subword_prefix (it calls opts.Get instead of opts.Set); a file
		// with another prefix gets the model rebuilt with the prefix set.
		v := sugarmodel.Vocab(wp.GetVocab())
		rebuilt := wordpiece.NewWordPieceBuilder().Vocab(&v).UnkToken(unk).
			ContinuingSubwordPrefix(prefix).MaxInputCharsPerWord(maxChars).Build()
		wp = &rebuilt
	}
	return wp, nil
}

// sugarmeFromReader runs pretrained.FromReader, turning a panic into an error.
func sugarmeFromReader(data []byte) (tk *sugartok.Tokenizer, err error) {
	defer func() {
		if r := recover(); r != nil {
			tk, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return pretrained.FromReader(bytes.NewReader(data))
}

// sugarme reads the same WordPiece vocabulary as loadWordPiece, so that comparing the two matchings compares like
// with like.
func TestTokenizerWordPieceVocabMatchesSugarme(t *testing.T) {
	tok := tokLoad(t, "bert-base-uncased", 512)
	tokens := tok.model.vocab()
	var file struct {
		Model hfModel `json:"model"`
	}
	tokLoadJSON(t, tokPath(t, "bert-base-uncased"), &file)
	wp, err := sugarmeWordPiece(file.Model.Vocab, "[UNK]", "##", 100)
	if err != nil {
		t.Fatal(err)
	}
	sugarVocab := wp.GetVocab()
	if len(sugarVocab) != len(tokens) {
		t.Fatalf("sugarme read %d vocabulary entries, we %d", len(sugarVocab), len(tokens))
	}
	for s, id := range sugarVocab {
		if id < 0 || id >= len(tokens) || tokens[id] != s {
			t.Fatalf("sugarme read id %d for %q", id, s)
		}
	}
}
