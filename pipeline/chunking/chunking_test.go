package chunking

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/config"
	"github.com/jetinfer/jetinfer/eserror"
)

// Expected offsets in these tests, unless a test says otherwise, come from
// Elasticsearch's chunkers run on the JVM with ICU4J: they are the offsets
// Elasticsearch reports (UTF-16 code units).

func TestSplitMatchesElasticsearchOnTestText(t *testing.T) {
	for _, tc := range []struct {
		s    config.ChunkingSettings
		want string
	}{
		{sentenceSettings(10, false), "0,56;35,100;100,154;135,187;164,218;194,266;232,304;277,354;315,370;370,436;410,468;446,509;478,548;522,579;556,610;592,638;620,678;653,727;690,746;746,819;785,857"},
		{sentenceSettings(10, true), "0,56;35,100;65,125;102,158;141,189;173,226;208,270;242,309;285,358;325,370;326,401;374,440;418,474;450,519;487,553;530,585;561,616;596,643;624,687;659,735;701,746;702,780;748,834;790,857"},
		{sentenceSettings(30, false), "0,100;100,277;187,370;370,556;468,638;569,746;746,857"},
		{sentenceSettings(30, true), "0,100;5,184;102,285;189,370;259,464;374,561;474,643;572,746;634,857"},
		{sentenceSettings(50, false), "0,100;100,370;370,664;556,857"},
		{sentenceSettings(50, true), "0,100;0,304;178,370;219,556;436,746;611,857"},
		{sentenceSettings(250, true), "0,857"},
		{wordSettings(20, 5), "0,119;92,208;178,304;270,418;382,509;474,596;569,678;643,790;757,857"},
		{wordSettings(250, 100), "0,857"},
	} {
		equal(t, fmt.Sprintf("%+v", tc.s), offsets(mustChunk(t, testText, tc.s)), tc.want)
	}
}

// MULTI_LINGUAL's Croatian, Frisian and Sindhi texts chunk exactly as in
// Elasticsearch.
func TestSplitMatchesElasticsearchOnMultilingual(t *testing.T) {
	for _, tc := range []struct {
		input int
		s     config.ChunkingSettings
		want  string
	}{
		{0, wordSettings(10, 0), "0,69;69,151;151,201;201,286;286,357;357,426;426,499;499,574;574,639;639,713;713,771;771,840;840,924;924,1000;1000,1071;1071,1129;1129,1185;1185,1263;1263,1338;1338,1398"},
		{0, sentenceSettings(20, true), "0,137;59,192;144,254;180,333;260,400;341,470;399,532;471,615;553,641;575,713;645,779;717,845;780,952;856,1016;954,1026;955,1088;1031,1145;1099,1222;1160,1307;1237,1380;1324,1398"},
		{1, wordSettings(10, 0), "0,48;48,98;98,142;142,198;198,237"},
		{1, sentenceSettings(20, true), "0,98;57,132;84,185;135,237"},
		{3, wordSettings(10, 0), "0,45;45,88;88,133;133,179;179,224;224,281;281,331;331,379;379,426;426,471;471,481"},
		{3, sentenceSettings(20, true), "0,3;0,88;48,137;96,188;143,240;197,302;254,321;273,366;323,381;332,426;383,448;404,481"},
	} {
		equal(t, fmt.Sprintf("input %d %+v", tc.input, tc.s), offsets(mustChunk(t, multiLingual[tc.input], tc.s)), tc.want)
	}
}

// Offsets are UTF-16 code units: 😀, 𝒳, 𝒴 and 👍 count 2, é and λ count 1.
func TestSplitUTF16Offsets(t *testing.T) {
	text := "Emoji 😀 count twice: 𝒳𝒴 are math letters. Ünïcödé café! Ελληνικά κείμενο. Done 👍🏽 now."
	for _, tc := range []struct {
		s    config.ChunkingSettings
		want string
	}{
		{wordSettings(2, 0), "0,14;14,26;26,35;35,52;52,67;67,81;81,91"},
		{wordSettings(3, 1), "0,20;14,30;26,43;35,57;52,75;67,90"},
		{sentenceSettings(3, false), "0,20;14,30;26,45;45,59;59,77;77,91"},
		{sentenceSettings(4, true), "0,26;20,45;31,59;45,77;59,91"},
	} {
		equal(t, fmt.Sprintf("%+v", tc.s), offsets(mustChunk(t, text, tc.s)), tc.want)
	}
	equal(t, "texts", chunkTexts(t, text, wordSettings(2, 0)), []string{
		"Emoji 😀 count", " twice: 𝒳𝒴", " are math", " letters. Ünïcödé", " café! Ελληνικά", " κείμενο. Done", " 👍🏽 now.",
	})
}

// Chinese and Japanese: ICU splits Han and kana runs into dictionary words
// (日本語|の|テキスト); without a dictionary each ideograph and Hiragana
// letter is a word and a Katakana run one word (日|本|語|の|テキスト). So
// such text counts more words than in Elasticsearch (about 1.6x for the
// Japanese of MULTI_LINGUAL, 1.7x for Chinese) and chunks hold less text.
func TestSplitCJKWordPerIdeograph(t *testing.T) {
	text := "日本語のテキスト"
	equal(t, "word(2,0)", chunkTexts(t, text, wordSettings(2, 0)), []string{"日本", "語の", "テキスト"})
	ws := segmentWords(text)
	equal(t, "words", ws.cum[ws.last()], 5)
	// ICU counts 68 words in MULTI_LINGUAL's Japanese text.
	ws = segmentWords(multiLingual[2])
	equal(t, "MULTI_LINGUAL Japanese words", ws.cum[ws.last()], 109)
	// Hangul is segmented as ICU does: a run of syllables is one word.
	korean := "대한민국은 민주공화국이다. API를 쓴다."
	ws = segmentWords(korean)
	equal(t, "Korean words", ws.cum[ws.last()], 5)
}

func TestSplitNone(t *testing.T) {
	text := strings.Repeat("No chunking at all. ", 500)
	chunks := mustChunk(t, text, config.ChunkingSettings{Strategy: config.ChunkNone})
	equal(t, "chunks", chunks, []Chunk{{Start: 0, End: len(text), ByteStart: 0, ByteEnd: len(text)}})
}

func TestSplitDefaultSettings(t *testing.T) {
	for _, s := range []*config.ChunkingSettings{config.DefaultChunking(), config.LegacyChunking()} {
		equal(t, string(s.Strategy), offsets(mustChunk(t, testText, *s)), "0,857")
	}
	// The plaintext group that recursive chunking defaults to. The second
	// paragraph has 15 words but counts 16: like Elasticsearch's
	// countWords, counting from the boundary before its start includes
	// "five", so it is split again at single newlines.
	text := strings.Repeat("One two three four five.\n", 3) + "\n" + strings.Repeat("Six seven eight nine ten.\n", 3)
	chunks := mustChunk(t, text, recursiveSettings(15, plaintextSeparators...))
	equal(t, "recursive plaintext", offsets(chunks), "0,74;74,127;127,154")
	equal(t, "recursive plaintext texts", texts(text, chunks), []string{
		"One two three four five.\nOne two three four five.\nOne two three four five.",
		"\n\nSix seven eight nine ten.\nSix seven eight nine ten.",
		"\nSix seven eight nine ten.\n",
	})
}

func TestSplitErrors(t *testing.T) {
	for _, tc := range []struct {
		s    config.ChunkingSettings
		want string
	}{
		{config.ChunkingSettings{}, "Invalid chunkingStrategy "},
		{config.ChunkingSettings{Strategy: "paragraph"}, "Invalid chunkingStrategy paragraph"},
		{sentenceSettings(0, false), "Invalid chunking parameters, max_chunk_size [0] must be > 0"},
		{recursiveSettings(-1, "\n"), "Invalid chunking parameters, max_chunk_size [-1] must be > 0"},
		{wordSettings(0, 0), "Invalid chunking parameters, max_chunk_size [0] must be > 0"},
	} {
		_, err := Split("some text", tc.s)
		if e := eserror.As(err); err == nil || e.Status != 400 || e.Type != eserror.TypeIllegalArgument || e.Reason != tc.want {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
}

func TestUTF16Len(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want int
	}{{"", 0}, {"abc", 3}, {"é", 1}, {"日本", 2}, {"😀", 2}, {"a👍🏽b", 6}, {"\xff", 1}, {"a\xe2\x82", 3}} {
		equal(t, fmt.Sprintf("%q", tc.s), utf16Len(tc.s), tc.want)
	}
}
