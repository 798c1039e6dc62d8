// Builds inference/tokenizer/testdata/bpe/tokenizer.json: a small byte-level BPE tokenizer shaped like RoBERTa's
// (and GPT-2's): ByteLevel pre-tokenizer with GPT-2's regex, BPE model over the 256 byte characters, <s> A </s> /
// <s> A </s> </s> B </s> by RobertaProcessing, specials <s> <pad> </s> <unk> in the vocabulary and <mask> (lstrip)
// after it, as in roberta-base.
//
// The merges are trained here by plain BPE on unigram-train.txt: the text is pre-tokenized as the tokenizer will
// (ByteLevel with add_prefix_space, one section per line), then the most frequent adjacent pair of symbols,
// counted over all words, is merged, ties going to the pair that sorts first, until MAX_MERGES merges or every word
// is one symbol. Pairs seen once are merged too (the text is small), which gives the file whole-word tokens and
// long merge chains besides the frequent pieces. It depends only on the training text, so running this again gives
// the same file.
//
// roberta-base itself has add_prefix_space false; this file has it true, which the Go tokenizer has to apply to
// every section between added tokens (false is covered by the Go unit tests). Its model options are those of
// transformers' RoBERTa converter: no unk_token, empty continuing_subword_prefix and end_of_word_suffix, no
// fuse_unk, no byte_fallback, dropout null. The merges are written as [left, right] pairs, the format tokenizers
// writes since 0.20 (the Go tests also load them as legacy "left right" strings).
//
// Usage: node build-bpe.mjs

import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { BYTE_TO_CHAR, preTokenize } from "./bytelevel.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "../../inference/tokenizer/testdata/bpe/tokenizer.json");

const MAX_MERGES = 2000;
const ADD_PREFIX_SPACE = true;

const text = readFileSync(join(here, "unigram-train.txt"), "utf8");
const wordCounts = new Map();
for (const line of text.split("\n")) {
  for (const word of preTokenize(line, { addPrefixSpace: ADD_PREFIX_SPACE })) {
    wordCounts.set(word, (wordCounts.get(word) ?? 0) + 1);
  }
}
// Each word as its symbols (byte characters at first) and its count.
const words = [...wordCounts.entries()].map(([w, count]) => ({ symbols: Array.from(w), count }));

const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const merges = [];
while (merges.length < MAX_MERGES) {
  // " " never occurs in a byte-level symbol (the space is "Ġ"), so "left right" identifies the pair.
  const pairCounts = new Map();
  for (const { symbols, count } of words) {
    for (let i = 0; i + 1 < symbols.length; i++) {
      const key = symbols[i] + " " + symbols[i + 1];
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + count);
    }
  }
  let best = null;
  let bestCount = 0;
  for (const [key, count] of pairCounts) {
    if (count > bestCount || (count === bestCount && byText(key, best) < 0)) {
      best = key;
      bestCount = count;
    }
  }
  if (best === null) break;
  const [left, right] = best.split(" ");
  merges.push([left, right]);
  for (const word of words) {
    const merged = [];
    for (let i = 0; i < word.symbols.length; i++) {
      if (i + 1 < word.symbols.length && word.symbols[i] === left && word.symbols[i + 1] === right) {
        merged.push(left + right);
        i++;
      } else {
        merged.push(word.symbols[i]);
      }
    }
    word.symbols = merged;
  }
}

const specials = ["<s>", "<pad>", "</s>", "<unk>"];
const vocab = {};
let nextID = 0;
const addToVocab = (token) => {
  if (!(token in vocab)) vocab[token] = nextID++;
};
specials.forEach(addToVocab);
BYTE_TO_CHAR.forEach(addToVocab);
merges.forEach(([left, right]) => addToVocab(left + right));
addToVocab("<mask>");

const added = (content, extra = {}) => ({
  id: vocab[content],
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
  truncation: null,
  padding: null,
  added_tokens: [added("<s>"), added("<pad>"), added("</s>"), added("<unk>"), added("<mask>", { lstrip: true })],
  normalizer: null,
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: ADD_PREFIX_SPACE, trim_offsets: true, use_regex: true },
  post_processor: {
    type: "RobertaProcessing",
    sep: ["</s>", vocab["</s>"]],
    cls: ["<s>", vocab["<s>"]],
    trim_offsets: true,
    add_prefix_space: ADD_PREFIX_SPACE,
  },
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: "BPE",
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: "",
    end_of_word_suffix: "",
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
    vocab,
    merges,
  },
};

// One merge per line keeps the file reviewable.
const json = JSON.stringify(tokenizer, null, 1).replace(
  /\[\n\s+("(?:[^"\\]|\\.)*"),\n\s+("(?:[^"\\]|\\.)*")\n\s+\]/g,
  "[$1, $2]",
);
writeFileSync(out, json + "\n");
console.log(`wrote ${out}: ${nextID} tokens, ${merges.length} merges`);
