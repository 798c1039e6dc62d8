// GPT-2's byte-level pre-tokenization as Hugging Face tokenizers (the Rust crate, pre_tokenizers/byte_level.rs)
// does it, for build-bpe.mjs and tokenize.mjs.
//
// The pattern is GPT-2's with \s spelled \p{White_Space}: tokenizers runs it with Oniguruma, whose \s is the Unicode
// White_Space property, while JavaScript's \s also matches U+FEFF and misses U+0085 (tokenizers.js uses the
// JavaScript \s as is).

export const GPT2_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

// bytes_to_unicode of openai/gpt-2 encoder.py: printable bytes stand for themselves, the others (in byte order) for
// U+0100 onwards.
export const BYTE_TO_CHAR = (() => {
  const printable = (b) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  const table = [];
  let n = 0;
  for (let b = 0; b < 256; b++) table.push(String.fromCodePoint(printable(b) ? b : 256 + n++));
  return table;
})();

const encoder = new TextEncoder();

export const byteLevelChars = (text) => Array.from(encoder.encode(text), (b) => BYTE_TO_CHAR[b]).join("");

// preTokenize is the ByteLevel pre-tokenizer on one section of text (a split between added tokens).
export function preTokenize(text, { addPrefixSpace, useRegex = true }) {
  if (text === "") return [];
  if (addPrefixSpace && !text.startsWith(" ")) text = " " + text;
  const words = useRegex ? text.match(GPT2_PATTERN) ?? [] : [text];
  return words.map(byteLevelChars);
}
