package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// The golden files hold what Hugging Face tokenizers computes for testdata/corpus.json with each test
// tokenizer at several maximum lengths (scripts/golden/tokenize.mjs writes them; CI does not run Node, the files
// are committed).

// tokTestTokenizers are the test tokenizers in testdata/, small enough for every test; tokGoldenTokenizers adds
// the real ones too large for the repository, which the golden tests (ids, offsets) run.
var (
	tokTestTokenizers   = []string{"bert-base-uncased", "unigram", "bpe"}
	tokGoldenTokenizers = append(slices.Clip(tokTestTokenizers), "qwen3", "gemma3")
)

// tokDownloaded are the test tokenizers whose tokenizer.json is too large for the repository:
// scripts/install-tokenizers.sh (which the test command runs) puts them in the user's cache.
var tokDownloaded = map[string]bool{"qwen3": true, "gemma3": true}

type tokCorpus struct {
	Single []string    `json:"single"`
	Pairs  [][2]string `json:"pairs"`
}

type tokGoldenCase struct {
	MaxLength int     `json:"max_length"`
	Single    *int    `json:"single"`
	Pair      *int    `json:"pair"`
	IDs       []int64 `json:"ids"`
	TypeIDs   []int64 `json:"type_ids"`
	Truncated bool    `json:"truncated"`
}

func tokLoadJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func tokLoadCorpus(t testing.TB) tokCorpus {
	var c tokCorpus
	tokLoadJSON(t, filepath.Join("testdata", "corpus.json"), &c)
	return c
}

func tokPath(t testing.TB, name string) string {
	if !tokDownloaded[name] {
		return filepath.Join("testdata", name, "tokenizer.json")
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache")
	}
	path := filepath.Join(cache, "jetinfer", "tokenizers", name, "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %v (the test command installs it with scripts/install-tokenizers.sh)", name, err)
		}
		t.Skipf("%s is not installed: run scripts/install-tokenizers.sh", name)
	}
	return path
}

// tokLoaded keeps the tokenizers the tests loaded, by path and maximum length: a Tokenizer is immutable, and the
// real ones take a second or more to load.
var tokLoaded sync.Map

func tokLoad(t testing.TB, name string, maxLength int) *Tokenizer {
	t.Helper()
	path := tokPath(t, name)
	key := fmt.Sprintf("%s@%d", path, maxLength)
	if tok, ok := tokLoaded.Load(key); ok {
		return tok.(*Tokenizer)
	}
	tok, err := Load(Config{Path: path, MaxLength: maxLength})
	if err != nil {
		t.Fatal(err)
	}
	tokLoaded.Store(key, tok)
	return tok
}

func TestTokenizerGolden(t *testing.T) {
	corpus := tokLoadCorpus(t)
	if len(corpus.Single) < 150 || len(corpus.Pairs) < 30 {
		t.Fatalf("corpus has %d texts and %d pairs, want at least 150 and 30", len(corpus.Single), len(corpus.Pairs))
	}
	for _, name := range tokGoldenTokenizers {
		t.Run(name, func(t *testing.T) {
			var golden struct {
				Cases []tokGoldenCase `json:"cases"`
			}
			tokLoadJSON(t, filepath.Join("testdata", name, "golden.json"), &golden)
			wantCases := 3 * (len(corpus.Single) + len(corpus.Pairs))
			if len(golden.Cases) != wantCases {
				t.Fatalf("golden.json has %d cases, want %d: regenerate it (scripts/golden)", len(golden.Cases), wantCases)
			}
			tokenizers := map[int]*Tokenizer{}
			passed := 0
			for _, c := range golden.Cases {
				tok := tokenizers[c.MaxLength]
				if tok == nil {
					tok = tokLoad(t, name, c.MaxLength)
					tokenizers[c.MaxLength] = tok
				}
				var (
					got   Encoding
					err   error
					input []string
				)
				switch {
				case c.Single != nil:
					input = []string{corpus.Single[*c.Single]}
					got, err = tok.Encode(input[0])
				case c.Pair != nil:
					p := corpus.Pairs[*c.Pair]
					input = p[:]
					got, err = tok.EncodePair(p[0], p[1])
				default:
					t.Fatalf("golden case without an input: %+v", c)
				}
				if err != nil {
					t.Errorf("max_length %d, %q: %v", c.MaxLength, input, err)
					continue
				}
				if !slices.Equal(got.IDs, c.IDs) || !slices.Equal(got.TypeIDs, c.TypeIDs) || got.Truncated != c.Truncated {
					t.Errorf("max_length %d, %q:\n got  %v %v truncated=%v\n want %v %v truncated=%v\n got tokens  %q\n want tokens %q",
						c.MaxLength, input, got.IDs, got.TypeIDs, got.Truncated, c.IDs, c.TypeIDs, c.Truncated,
						tokTokens(tok, got.IDs), tokTokens(tok, c.IDs))
					continue
				}
				passed++
			}
			t.Logf("%s: %d/%d golden cases equal to Hugging Face", name, passed, len(golden.Cases))
		})
	}
}

func tokTokens(tok *Tokenizer, ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = tok.Token(id)
	}
	return out
}
