package chunking

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/jetinfer/jetinfer/config"
)

// testText is WordBoundaryChunkerTests.TEST_TEXT, shared by Elasticsearch's
// chunker tests.
const testText = "Word segmentation is the problem of dividing a string of written language into its component words.\n" +
	"In English and many other languages using some form of the Latin alphabet, the space is a good approximation of a word divider " +
	"(word delimiter), although this concept has limits because of the variability with which languages emically regard collocations " +
	"and compounds. Many English compound nouns are variably written (for example, ice box = ice-box = icebox; pig sty = pig-sty = " +
	"pigsty) with a corresponding variation in whether speakers think of them as noun phrases or single nouns; there are trends in " +
	"how norms are set, such as that open compounds often tend eventually to solidify by widespread convention, but variation remains" +
	" systemic. In contrast, German compound nouns show less orthographic variation, with solidification being a stronger norm."

// multiLingual is WordBoundaryChunkerTests.MULTI_LINGUAL.
var multiLingual = []string{
	"Građevne strukture Mesa Verde dokaz su akumuliranog znanja i vještina koje su se stoljećima prenosile generacijama civilizacije" +
		" Anasazi. Vrhunce svojih dosega ostvarili su u 12. i 13. stoljeću, kada su sagrađene danas najpoznatije građevine na " +
		"liticama. Zidali su obrađenim pješčenjakom, tvrđim kamenom oblikovanim do veličine štruce kruha. Kao žbuku između ciglā " +
		"stavljali su glinu razmočenu vodom. Tim su materijalom gradili prostorije veličine do 6 četvornih metara. U potkrovljima " +
		"su skladištili žitarice i druge plodine, dok su kive - ceremonijalne prostorije - gradili ispred soba, ali ukopane u zemlju," +
		" nešto poput današnjih podruma. Kiva je bila vrhunski dizajnirana prostorija okruglog oblika s prostorom za vatru zimi te s" +
		" dovodom hladnog zraka za klimatizaciju ljeti. U zidane konstrukcije stavljali su i lokalno posječena stabla, što današnjim" +
		" arheolozima pomaže u preciznom datiranju nastanka pojedine građevine metodom dendrokronologije. Ta stabla pridonose i" +
		" teoriji o mogućem konačnom slomu ondašnjeg društva. Nakon što su, tijekom nekoliko stoljeća, šume do kraja srušene, a " +
		"njihova obnova zbog sušne klime traje i po 200 godina, nije proteklo puno vremena do konačnog urušavanja civilizacije, " +
		"koja se, na svojem vrhuncu osjećala nepobjedivom. 90 % sagrađenih naseobina ispod stijena ima do deset prostorija. ⅓ od " +
		"ukupnog broja sagrađenih kuća ima jednu ili dvije kamene prostorije",
	"Histoarysk wie in acre in stik lân dat 40 roeden (oftewol 1 furlong of ⅛ myl of 660 foet) lang wie, en 4 roeden (of 66 foet) " +
		"breed. Men is fan tinken dat dat likernôch de grûnmjitte wie dy't men mei in jok oksen yn ien dei beploegje koe.",
	"創業当初の「太平洋化学工業社」から1959年太平洋化学工業株式会社へ、1987年には太平洋化学㈱に社名を変更。 1990年以降、海外拠点を増やし本格的な国際進出を始動。" +
		" 創業者がつくりあげた化粧品会社を世界企業へと成長させるべく2002年3月英文社名AMOREPACIFICに改めた。",
	"۱۔ ھن شق جي مطابق قادياني گروھ يا لاھوري گروھ جي ڪنھن رڪن کي جيڪو پاڻ کي 'احمدي' يا ڪنھن ٻي نالي سان پڪاري جي لاءِ ممنوع قرار " +
		"ڏنو ويو آھي تہ ھو (الف) ڳالھائي، لکي يا ڪنھن ٻي طريقي سان ڪنھن خليفي يا آنحضور ﷺ جي ڪنھن صحابي کان علاوہڍه ڪنھن کي امير" +
		" المومنين يا" +
		" خليفہ المومنين يا خليفہ المسلمين يا صحابی يا رضي الله عنه چئي۔ (ب) آنحضور ﷺ جي گھروارين کان علاوه ڪنھن کي ام المومنين " +
		"چئي۔ (ج) آنحضور ﷺ جي خاندان جي اھل بيت کان علاوہڍه ڪنھن کي اھل بيت چئي۔ (د) پنھنجي عبادت گاھ کي مسجد چئي۔",
}

func wordSettings(size, overlap int) config.ChunkingSettings {
	return config.ChunkingSettings{Strategy: config.ChunkWord, MaxChunkSize: size, Overlap: overlap}
}

func sentenceSettings(max int, overlap bool) config.ChunkingSettings {
	s := config.ChunkingSettings{Strategy: config.ChunkSentence, MaxChunkSize: max}
	if overlap {
		s.SentenceOverlap = 1
	}
	return s
}

func recursiveSettings(max int, separators ...string) config.ChunkingSettings {
	return config.ChunkingSettings{Strategy: config.ChunkRecursive, MaxChunkSize: max, Separators: separators}
}

// mustChunk chunks and checks the invariants every result has: offsets in
// bounds, the UTF-16 offsets matching the byte offsets.
func mustChunk(t testing.TB, text string, s config.ChunkingSettings) []Chunk {
	t.Helper()
	chunks, err := Split(text, s)
	if err != nil {
		t.Fatalf("Split(%.40q, %+v): %v", text, s, err)
	}
	checkChunks(t, text, chunks)
	return chunks
}

func checkChunks(t testing.TB, text string, chunks []Chunk) {
	t.Helper()
	if len(chunks) == 0 {
		t.Fatalf("no chunks for %.40q", text)
	}
	// units[i] is the UTF-16 offset of byte i, -1 inside a rune.
	units := make([]int, len(text)+1)
	u := 0
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		units[i] = u
		for k := 1; k < size; k++ {
			units[i+k] = -1
		}
		u += utf16.RuneLen(r)
		i += size
	}
	units[len(text)] = u
	for i, c := range chunks {
		if c.ByteStart < 0 || c.ByteStart > c.ByteEnd || c.ByteEnd > len(text) {
			t.Fatalf("chunk %d %+v out of bounds (len %d)", i, c, len(text))
		}
		if units[c.ByteStart] < 0 || units[c.ByteEnd] < 0 {
			t.Fatalf("chunk %d %+v not on rune boundaries", i, c)
		}
		if c.Start != units[c.ByteStart] || c.End != units[c.ByteEnd] {
			t.Fatalf("chunk %d %+v: UTF-16 offsets should be %d,%d", i, c, units[c.ByteStart], units[c.ByteEnd])
		}
	}
}

func texts(text string, chunks []Chunk) []string {
	out := make([]string, len(chunks))
	for i, c := range chunks {
		out[i] = c.Text(text)
	}
	return out
}

func chunkTexts(t testing.TB, text string, s config.ChunkingSettings) []string {
	t.Helper()
	return texts(text, mustChunk(t, text, s))
}

// offsets renders the UTF-16 offsets as Elasticsearch's tests list them:
// "start,end;start,end".
func offsets(chunks []Chunk) string {
	parts := make([]string, len(chunks))
	for i, c := range chunks {
		parts[i] = fmt.Sprintf("%d,%d", c.Start, c.End)
	}
	return strings.Join(parts, ";")
}

func equal[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// numberedWords is "0 1 2 ... n-1 " as Elasticsearch's tests build it.
func numberedWords(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d ", i)
	}
	return b.String()
}
