package chunking

import (
	"errors"
	"time"
)

// recursiveChunker is RecursiveChunker: a piece within maxWords is a chunk;
// a longer one is split at every match of the next separator, neighbouring
// pieces are merged greedily while they fit, and pieces still too long go
// on to the following separator. When the separators run out, the sentence
// chunker (no overlap) splits what is left.
type recursiveChunker struct {
	text       string
	ws         *wordSegs // of the whole text: pieces are counted in context
	patterns   []string
	separators []separator // compiled when first needed
	maxWords   int
	deadline   time.Time
	budget     time.Duration
}

func recursiveChunks(text string, patterns []string, maxWords int, budget time.Duration) ([]span, error) {
	rc := &recursiveChunker{
		text:       text,
		ws:         segmentWords(text),
		patterns:   patterns,
		separators: make([]separator, len(patterns)),
		maxWords:   maxWords,
		deadline:   time.Now().Add(budget),
		budget:     budget,
	}
	return rc.chunk(nil, span{0, len(text)}, 0)
}

// piece is RecursiveChunker.ChunkOffsetAndCount.
type piece struct {
	span
	words int
}

func (rc *recursiveChunker) count(sp span) piece {
	return piece{sp, rc.ws.countWords(sp.start, sp.end)}
}

// chunk appends the chunks of sp, splitting with the separators from
// sepIdx on, to out.
func (rc *recursiveChunker) chunk(out []span, sp span, sepIdx int) ([]span, error) {
	if sp.start == sp.end || rc.count(sp).words <= rc.maxWords {
		return append(out, sp), nil
	}
	if sepIdx >= len(rc.patterns) {
		// Backup: the sentence chunker on the piece alone.
		for _, c := range sentenceChunks(rc.text[sp.start:sp.end], rc.maxWords, false) {
			out = append(out, span{sp.start + c.start, sp.start + c.end})
		}
		return out, nil
	}
	pieces, err := rc.split(sp, sepIdx)
	if err != nil {
		return nil, err
	}
	for _, p := range rc.merge(pieces) {
		if p.words <= rc.maxWords {
			out = append(out, p.span)
			continue
		}
		if out, err = rc.chunk(out, p.span, sepIdx+1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// split is splitTextBySeparatorRegex: each match starts a new piece; empty
// pieces are dropped.
func (rc *recursiveChunker) split(sp span, sepIdx int) ([]piece, error) {
	sep := rc.separators[sepIdx]
	if sep == nil {
		var err error
		if sep, err = compileSeparator(rc.patterns[sepIdx]); err != nil {
			return nil, err
		}
		rc.separators[sepIdx] = sep
	}
	starts, err := sep.starts(rc.text[sp.start:sp.end], rc.deadline)
	if errors.Is(err, errSeparatorTimeout) {
		return nil, illegalArgument("Chunk separator regex [%s] has exceeded the time limit of %s", rc.patterns[sepIdx], rc.budget)
	}
	if err != nil {
		return nil, err
	}
	var pieces []piece
	chunkStart := sp.start
	for _, s := range starts {
		chunkEnd := sp.start + s
		if chunkStart < chunkEnd {
			pieces = append(pieces, rc.count(span{chunkStart, chunkEnd}))
		}
		chunkStart = chunkEnd
	}
	if chunkStart < sp.end {
		pieces = append(pieces, rc.count(span{chunkStart, sp.end}))
	}
	return pieces, nil
}

// merge is mergeChunkOffsetsUpToMaxChunkSize: neighbours join while their
// summed word counts stay within maxWords.
func (rc *recursiveChunker) merge(pieces []piece) []piece {
	if len(pieces) < 2 {
		return pieces
	}
	var merged []piece
	cur := pieces[0]
	for _, p := range pieces[1:] {
		if cur.words+p.words <= rc.maxWords {
			cur = piece{span{cur.start, p.end}, cur.words + p.words}
		} else {
			merged = append(merged, cur)
			cur = p
		}
	}
	return append(merged, cur)
}
