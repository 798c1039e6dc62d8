// Writes the golden files that come from the Hugging Face tokenizers Rust crate itself, through the Node binding
// @anush008/tokenizers (pinned in package.json; tokenizers 0.22.2 compiled for linux-x64):
//
//  - offsets.json for every test tokenizer: each text of ../../inference/tokenizer/testdata/corpus.json encoded with
//    its special tokens and without truncation, as ids and offsets ([start, end), null for a special token). The
//    binding reports offsets in characters (Encoding char offsets: the byte offsets mapped by tokenizers'
//    BytesToCharOffsetConverter); they are kept so, and the Go test maps its byte offsets the same way.
//  - golden.json for the real tokenizers too large to keep in the repository (qwen3, gemma3; see
//    scripts/install-tokenizers.sh): ids, type ids and truncation at each maximum length, as tokenize.mjs writes
//    them for the others, here with the crate's own truncation (LongestFirst, right).
//
// Usage: npm ci && ../install-tokenizers.sh && node rust.mjs

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { homedir } from "node:os";
import { Tokenizer } from "@anush008/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const testdata = join(here, "../../inference/tokenizer/testdata");
const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "jetinfer/tokenizers");
const LOCAL = ["bert-base-uncased", "unigram", "bpe"];
const DOWNLOADED = ["qwen3", "gemma3"];
const MAX_LENGTHS = [512, 128, 16];

const corpus = JSON.parse(readFileSync(join(testdata, "corpus.json"), "utf8"));
const binding = JSON.parse(readFileSync(join(here, "node_modules/@anush008/tokenizers/package.json"), "utf8")).version;
const generator = `scripts/golden/rust.mjs, @anush008/tokenizers ${binding} (tokenizers 0.22.2), node ${process.versions.node}`;

async function load(path) {
  const tok = await Tokenizer.fromFile(path);
  tok.disablePadding();
  tok.disableTruncation();
  return tok;
}

function write(path, header, lines) {
  const body = lines.map((l) => "  " + JSON.stringify(l)).join(",\n");
  writeFileSync(path, `{\n "generator": ${JSON.stringify(header)},\n "corpus": "../corpus.json",\n "cases": [\n${body}\n ]\n}\n`);
}

for (const name of [...LOCAL, ...DOWNLOADED]) {
  const path = LOCAL.includes(name) ? join(testdata, name, "tokenizer.json") : join(cache, name, "tokenizer.json");
  const tok = await load(path);
  const lines = [];
  for (const [index, text] of corpus.single.entries()) {
    const enc = await tok.encode(text, null, { addSpecialTokens: true });
    const special = enc.getSpecialTokensMask();
    const offsets = enc.getOffsets().map((o, i) => (special[i] ? null : o));
    lines.push({ single: index, ids: enc.getIds(), offsets });
  }
  mkdirSync(join(testdata, name), { recursive: true });
  write(join(testdata, name, "offsets.json"), generator, lines);
  console.log(`${name}: ${lines.length} offset cases`);

  if (!DOWNLOADED.includes(name)) continue;
  const cases = [];
  for (const maxLength of MAX_LENGTHS) {
    tok.setTruncation(maxLength);
    for (const [index, text] of corpus.single.entries()) {
      const enc = await tok.encode(text, null, { addSpecialTokens: true });
      cases.push({ max_length: maxLength, single: index, ids: enc.getIds(), type_ids: enc.getTypeIds(), truncated: enc.getOverflowing().length > 0 });
    }
    for (const [index, [first, second]] of corpus.pairs.entries()) {
      const enc = await tok.encode(first, second, { addSpecialTokens: true });
      cases.push({ max_length: maxLength, pair: index, ids: enc.getIds(), type_ids: enc.getTypeIds(), truncated: enc.getOverflowing().length > 0 });
    }
  }
  tok.disableTruncation();
  write(join(testdata, name, "golden.json"), generator, cases);
  console.log(`${name}: ${cases.length} golden cases`);
}
