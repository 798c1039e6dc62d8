// Builds inference/tokenizer/testdata/unigram/tokenizer.json: a small Unigram tokenizer shaped like XLM-RoBERTa's
// (multilingual-e5): Unigram model, Metaspace "▁" pre-tokenizer, <s> … </s> template, <pad>, <unk>, and a <mask>
// with lstrip like XLM-R's.
//
// The pieces are not trained with EM like SentencePiece's: they are the substrings (up to 8 characters, never with
// a "▁" inside, as SentencePiece with split_by_whitespace) of the words of unigram-train.txt, the most frequent ones
// weighted by length, and each piece's score is the log of its relative frequency. That is enough for a Viterbi
// segmentation with real choices to make, unknown characters, and ties. The output depends only on the training
// text, so running this again gives the same file.
//
// Real XLM-R files normalize with SentencePiece's precompiled charsmap. tokenizers.js only approximates that
// normalizer (NFKC plus a few replacements), so a golden test of it against tokenizers.js would compare two
// approximations; this file uses NFKC and collapses runs of spaces instead, which both sides implement exactly.
// The Go Precompiled normalizer has its own unit tests.
//
// Usage: node build-unigram.mjs

import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "../../inference/tokenizer/testdata/unigram/tokenizer.json");

const MAX_PIECE_CHARS = 8;
const MULTI_CHAR_PIECES = 1500;

const text = readFileSync(join(here, "unigram-train.txt"), "utf8").normalize("NFKC");
const words = text.split(/\s+/u).filter((w) => w !== "").map((w) => "\u2581" + w);

const counts = new Map();
for (const word of words) {
  const chars = Array.from(word);
  for (let i = 0; i < chars.length; i++) {
    for (let n = 1; n <= MAX_PIECE_CHARS && i + n <= chars.length; n++) {
      const piece = chars.slice(i, i + n).join("");
      counts.set(piece, (counts.get(piece) ?? 0) + 1);
    }
  }
}

const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const singles = [...counts.keys()].filter((p) => Array.from(p).length === 1);
const multi = [...counts.entries()]
  .filter(([p, c]) => Array.from(p).length > 1 && c >= 2)
  .sort((a, b) => b[1] * Array.from(b[0]).length - a[1] * Array.from(a[0]).length || byText(a[0], b[0]))
  .slice(0, MULTI_CHAR_PIECES)
  .map(([p]) => p);

const chosen = [...singles, ...multi];
const total = chosen.reduce((sum, p) => sum + counts.get(p), 0);
// Rounded so that the JSON carries exactly the numbers both implementations parse.
const score = (p) => Math.round(Math.log(counts.get(p) / total) * 1e6) / 1e6;
const pieces = chosen
  .map((p) => [p, score(p)])
  .sort((a, b) => b[1] - a[1] || byText(a[0], b[0]));

const specials = ["<s>", "<pad>", "</s>", "<unk>"];
const vocab = [...specials.map((s) => [s, 0.0]), ...pieces, ["<mask>", 0.0]];
const maskID = vocab.length - 1;

const added = (id, content, extra = {}) => ({
  id,
  content,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
  ...extra,
});

const tokenizer = {
  version: "1.0",
  // Both are replaced by TokenizerConfig.MaxLength (no padding, truncation to MaxLength); kept to prove it.
  truncation: { direction: "Right", max_length: 512, strategy: "LongestFirst", stride: 0 },
  padding: {
    strategy: "BatchLongest",
    direction: "Right",
    pad_to_multiple_of: null,
    pad_id: 1,
    pad_type_id: 0,
    pad_token: "<pad>",
  },
  added_tokens: [
    added(0, "<s>"),
    added(1, "<pad>"),
    added(2, "</s>"),
    added(3, "<unk>"),
    added(maskID, "<mask>", { lstrip: true }),
  ],
  normalizer: {
    type: "Sequence",
    normalizers: [
      { type: "NFKC" },
      { type: "Replace", pattern: { Regex: " {2,}" }, content: " " },
    ],
  },
  pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true },
  post_processor: {
    type: "TemplateProcessing",
    single: [
      { SpecialToken: { id: "<s>", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "</s>", type_id: 0 } },
    ],
    pair: [
      { SpecialToken: { id: "<s>", type_id: 0 } },
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "</s>", type_id: 0 } },
      { SpecialToken: { id: "</s>", type_id: 1 } },
      { Sequence: { id: "B", type_id: 1 } },
      { SpecialToken: { id: "</s>", type_id: 1 } },
    ],
    special_tokens: {
      "<s>": { id: "<s>", ids: [0], tokens: ["<s>"] },
      "</s>": { id: "</s>", ids: [2], tokens: ["</s>"] },
    },
  },
  decoder: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: true },
  model: { type: "Unigram", unk_id: 3, vocab, byte_fallback: false },
};

writeFileSync(out, JSON.stringify(tokenizer, null, 1) + "\n");
console.log(`wrote ${out}: ${vocab.length} pieces`);
