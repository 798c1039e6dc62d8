#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that github.com/yalue/onnxruntime_go
# loads: ORT 1.24.3 (C API 24), taken from the onnxruntime-node npm package,
# into ${XDG_CACHE_HOME:-~/.cache}/jetinfer/onnxruntime/<version>/ (where
# jetinfer looks for it, see inference/ortlib) unless it is there already.
# Prints its path. Needs npm (only to fetch the tarball) and tar; no Node.js
# at run time.
set -euo pipefail

version=1.24.3 # = ortlib.Version
dir=${XDG_CACHE_HOME:-$HOME/.cache}/jetinfer/onnxruntime/$version
lib=$dir/libonnxruntime.so.1
if [ ! -s "$lib" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null 2>&1)
  tar -xzf "$tmp/onnxruntime-node-$version.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.partial"
  mv "$lib.partial" "$lib"
fi
echo "$lib"
