// Writes the golden token ids that inference/tokenizer/golden_test.go compares the Go tokenizer against.
//
// For each tokenizer under inference/tokenizer/testdata/ (bert-base-uncased, unigram, bpe), every text and every pair of
// ../../inference/tokenizer/testdata/corpus.json is encoded with Hugging Face's tokenizers.js
// (@huggingface/tokenizers, pinned in package.json) at several maximum lengths, and the ids, token type ids and
// whether the input was truncated go to <tokenizer>/golden.json.
//
// The reference is Hugging Face tokenizers, the Rust crate behind transformers' fast tokenizers. tokenizers.js
// reimplements it in JavaScript and deviates from it in a few places that this corpus reaches; those are corrected
// here, each after the Rust source it follows:
//
//  1. Truncation. tokenizers.js has none. It is done here as tokenizers' truncate_encodings does (strategy
//     LongestFirst, direction Right, stride 0) on the encodings without special tokens, with max_length reduced by
//     the number of special tokens the post-processor adds; then the post-processor runs.
//  2. BertNormalizer. tokenizers.js lowercases the whole string with toLowerCase, which turns a word-final Σ into
//     ς; Rust maps each character on its own (σ). It also lowercases before stripping accents (Rust strips first)
//     and pads CJK ideographs with spaces per UTF-16 unit, missing those outside the BMP (U+20000…). The patched
//     normalize follows normalizers/bert.rs.
//  3. Metaspace. tokenizers.js hands the whole section to the model; Rust (split: true, the default and what our
//     Unigram file says) cuts it before every "▁" first (SplitDelimiterBehavior::MergedWithNext), which changes
//     the Unigram segmentation wherever a piece could span two words.
//  4. ByteLevel's GPT-2 pattern. tokenizers.js runs it with JavaScript's \s, which matches U+FEFF and not U+0085;
//     Rust runs it with Oniguruma, whose \s is the White_Space property (U+0085 yes, U+FEFF no). The corpus has
//     both, so the pre-tokenizer here uses the pattern with \p{White_Space} (bytelevel.mjs,
//     pre_tokenizers/byte_level.rs). With the test BPE file the other words happen to give the same ids (no merge
//     spans them); the Go unit tests check the words themselves.
//  5. RobertaProcessing. tokenizers.js gives the second sequence of a pair type id 1; Rust gives every token type
//     id 0 ("Roberta is weird", processors/roberta.rs), which is what the golden file says.
//
// tokenizers.js's BPE model also differs from Rust's (models/bpe/model.rs) in ways our BPE file does not reach,
// which is why the file is as it is: it resolves unknown tokens and byte_fallback after merging (Rust: per
// character, before), ignores continuing_subword_prefix, checks ignore_merges against the added tokens too, and
// fuses <unk> after the fact. The BPE file has no unk_token, no prefix, no byte_fallback and no ignore_merges (as
// RoBERTa), so every character is one of the 256 byte characters and only the merges matter, and those it ranks
// as Rust does (lowest rank first, leftmost first among equal ranks). The Go unit tests cover the other options
// against the Rust source.
//
// Usage: npm ci && node tokenize.mjs

import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { Tokenizer, BertNormalizer, MetaspacePreTokenizer, ByteLevelPreTokenizer } from "@huggingface/tokenizers";
import { preTokenize } from "./bytelevel.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const testdata = join(here, "../../inference/tokenizer/testdata");
const TOKENIZERS = ["bert-base-uncased", "unigram", "bpe"];
const MAX_LENGTHS = [512, 128, 16];

// --- 2. BertNormalizer as tokenizers' normalizers/bert.rs -------------------------------------------------------

const isChineseChar = (cp) =>
  (cp >= 0x4e00 && cp <= 0x9fff) ||
  (cp >= 0x3400 && cp <= 0x4dbf) ||
  (cp >= 0x20000 && cp <= 0x2a6df) ||
  (cp >= 0x2a700 && cp <= 0x2b73f) ||
  (cp >= 0x2b740 && cp <= 0x2b81f) ||
  (cp >= 0x2b920 && cp <= 0x2ceaf) ||
  (cp >= 0xf900 && cp <= 0xfaff) ||
  (cp >= 0x2f800 && cp <= 0x2fa1f);

BertNormalizer.prototype.tokenize_chinese_chars = function (text) {
  let out = "";
  for (const ch of text) {
    out += isChineseChar(ch.codePointAt(0)) ? ` ${ch} ` : ch;
  }
  return out;
};

BertNormalizer.prototype.normalize = function (text) {
  const lowercase = this.config.lowercase ?? true;
  if (this.config.clean_text ?? true) text = this.clean_text(text);
  if (this.config.handle_chinese_chars ?? true) text = this.tokenize_chinese_chars(text);
  if (this.config.strip_accents ?? lowercase) text = this.strip_accents(text); // NFD, then drop Mn
  if (lowercase) text = Array.from(text, (ch) => ch.toLowerCase()).join("");
  return text;
};

// --- 3. Metaspace with split: true ------------------------------------------------------------------------------

const metaspace = MetaspacePreTokenizer.prototype.pre_tokenize_text;
MetaspacePreTokenizer.prototype.pre_tokenize_text = function (text, options) {
  const words = [];
  for (const normalized of metaspace.call(this, text, options)) {
    let start = 0;
    let i = 0;
    for (const ch of normalized) {
      if (ch === this.replacement && i > start) {
        words.push(normalized.slice(start, i));
        start = i;
      }
      i += ch.length;
    }
    words.push(normalized.slice(start));
  }
  return words;
};

// --- 4. ByteLevel with Oniguruma's \s -------------------------------------------------------------------------------

ByteLevelPreTokenizer.prototype.pre_tokenize_text = function (text) {
  return preTokenize(text, { addPrefixSpace: this.add_prefix_space, useRegex: this.use_regex });
};

// --- 1. Truncation as tokenizers' utils/truncation.rs, then the post-processor ------------------------------------

function truncate(a, b, maxLength) {
  const total = a.length + (b ? b.length : 0);
  if (total <= maxLength) return { a, b, truncated: false };
  if (!b) return { a: a.slice(0, maxLength), b, truncated: true };
  let n1 = a.length;
  let n2 = b.length;
  const swap = n1 > n2;
  if (swap) [n1, n2] = [n2, n1];
  n2 = n1 > maxLength ? n1 : Math.max(n1, maxLength - n1);
  if (n1 + n2 > maxLength) {
    n1 = Math.floor(maxLength / 2);
    n2 = n1 + (maxLength % 2);
  }
  if (swap) [n1, n2] = [n2, n1];
  return { a: a.slice(0, n1), b: b.slice(0, n2), truncated: true };
}

function addedBySpecials(tokenizerJSON, pair) {
  const pp = tokenizerJSON.post_processor;
  if (pp?.type === "RobertaProcessing") return pair ? 4 : 2;
  if (pp?.type !== "TemplateProcessing") throw new Error(`unexpected post_processor ${pp?.type}`);
  return (pair ? pp.pair : pp.single)
    .filter((piece) => piece.SpecialToken)
    .reduce((n, piece) => n + pp.special_tokens[piece.SpecialToken.id].ids.length, 0);
}

function encode(tokenizer, tokenizerJSON, maxLength, first, second) {
  const pair = second !== undefined;
  const tokensOf = (text) => tokenizer.encode(text, { add_special_tokens: false }).tokens;
  const room = maxLength - addedBySpecials(tokenizerJSON, pair);
  const { a, b, truncated } = truncate(tokensOf(first), pair ? tokensOf(second) : null, room);
  const { tokens, token_type_ids: typeIDs } = tokenizer.post_processor(a, b, true);
  // 5. RobertaProcessing: every type id 0.
  const token_type_ids = tokenizerJSON.post_processor.type === "RobertaProcessing" ? typeIDs.map(() => 0) : typeIDs;
  // The token → id mapping of Tokenizer.encode.
  const ids = tokens.map(
    (t) => tokenizer.added_tokens_map.get(t)?.id ?? tokenizer.model.tokens_to_ids.get(t) ?? tokenizer.model.unk_token_id,
  );
  if (ids.some((id) => id === undefined)) throw new Error(`unmapped token in ${JSON.stringify(tokens)}`);
  return { ids, type_ids: token_type_ids, truncated };
}

const corpus = JSON.parse(readFileSync(join(testdata, "corpus.json"), "utf8"));
const version = JSON.parse(readFileSync(join(here, "node_modules/@huggingface/tokenizers/package.json"), "utf8")).version;

for (const name of TOKENIZERS) {
  const tokenizerJSON = JSON.parse(readFileSync(join(testdata, name, "tokenizer.json"), "utf8"));
  const tokenizer = new Tokenizer(tokenizerJSON, {});
  const lines = [];
  for (const maxLength of MAX_LENGTHS) {
    corpus.single.forEach((text, index) => {
      lines.push({ max_length: maxLength, single: index, ...encode(tokenizer, tokenizerJSON, maxLength, text) });
    });
    corpus.pairs.forEach(([first, second], index) => {
      lines.push({ max_length: maxLength, pair: index, ...encode(tokenizer, tokenizerJSON, maxLength, first, second) });
    });
  }
  const header = {
    generator: `scripts/golden/tokenize.mjs, @huggingface/tokenizers ${version}, node ${process.versions.node}`,
    corpus: "../corpus.json",
  };
  const body = lines.map((l) => "  " + JSON.stringify(l)).join(",\n");
  const text = `{\n "generator": ${JSON.stringify(header.generator)},\n "corpus": ${JSON.stringify(header.corpus)},\n "cases": [\n${body}\n ]\n}\n`;
  writeFileSync(join(testdata, name, "golden.json"), text);
  console.log(`${name}: ${lines.length} cases`);
}
