#!/usr/bin/env bash
# Build the Ollama server (`ollama`, the module's root package) for CPU from the Go module
# proxy, pinned, into DEST; skipped when that version is already there.
#
# The module github.com/ollama/ollama vendors ggml and llama.cpp; `go build` compiles them
# through cgo (gcc/g++, ~180 C/C++ files): ml/backend/ggml/ggml/src defines
# GGML_USE_CPU and imports its ggml-cpu package, so the CPU backend is linked into the binary
# statically. The GPU backends (CUDA, ROCm, Vulkan) and the per-microarchitecture CPU
# variants (libggml-cpu-haswell.so, ...) are separate CMake builds that the binary would load
# from ../lib/ollama at run time; none are built here, so inference runs on the cgo-built CPU
# backend, compiled for the baseline of GOARCH (on amd64: SSE2, no AVX) unless CGO_CFLAGS /
# CGO_CXXFLAGS say otherwise (e.g. "-O3 -march=x86-64-v3" for a faster, less portable binary).
# No build tags are needed (`mlx` is for Apple's MLX runner only). The version is stamped as
# upstream's release scripts do (scripts/env.sh), which also turns gin's debug mode off.
#
# The module zip is fetched with `go mod download`, which checks it against the checksum
# database (sum.golang.org), then unpacked next to the other sources; the build runs there
# with the module's own go.sum. Go module zips leave out every `vendor/` directory, so
# llama/llama.cpp/vendor (header-only libraries upstream copies in, see Makefile.sync) is
# missing and three headers are supplied instead: nlohmann/json (json-schema-to-grammar.cpp)
# and stb/stb_image.h (tools/mtmd) from Debian's nlohmann-json3-dev and libstb-dev, found on
# the compiler's default include path, and miniaudio/miniaudio.h (tools/mtmd, audio input)
# from the Go module of github.com/gen2brain/malgo, which ships miniaudio's single header.
#
# Usage: build-ollama.sh VERSION DEST   (e.g. v0.17.4 ~/.cache/support-inbox/bin/ollama)
set -euo pipefail
version=$1 dest=$2
module=github.com/ollama/ollama
# `ollama --version` prints "ollama version is 0.17.4", or with no server to ask
# "Warning: client version is 0.17.4"; OLLAMA_HOST points at a closed port so the check never
# depends on (or waits for) a running server.
installed_version() {
  OLLAMA_HOST=127.0.0.1:9 "$1" --version 2>&1 | sed -n 's#.*version is \([^ ]*\)$#\1#p' | tail -1
}
if [ -x "$dest" ] && [ "$(installed_version "$dest")" = "${version#v}" ]; then
  echo "ollama ${version}: already built at $dest"; exit 0
fi
command -v gcc >/dev/null && command -v g++ >/dev/null ||
  { echo "ollama: the cgo build needs gcc and g++ (apt-get install gcc g++)" >&2; exit 1; }
work=$(dirname "$dest")/../src/ollama-${version}
mkdir -p "$(dirname "$dest")" "$(dirname "$work")"
# header-only libraries the module zip lacks (see above); Debian 12 has no miniaudio package
miniaudio_module=github.com/gen2brain/malgo@v0.11.24   # miniaudio 0.11.23; llama.cpp pins 0.11.2x
for h in nlohmann/json.hpp stb/stb_image.h; do
  echo "#include <$h>" | g++ -E -x c++ - >/dev/null 2>&1 || {
    echo "ollama: the cgo build needs <$h> (apt-get install nlohmann-json3-dev libstb-dev)" >&2
    exit 1; }
done
if [ ! -d "$work" ]; then
  echo "ollama ${version}: downloading module source from the Go module proxy (~23 MB)"
  tmp=$(mktemp -d)
  # verified against the checksum database; a throw-away module cache keeps the user's clean
  zip=$(cd "$tmp" && GOMODCACHE="$tmp/modcache" GOFLAGS=-modcacherw \
    go mod download -json "$module@$version" | sed -n 's#.*"Zip": *"\([^"]*\)".*#\1#p')
  [ -f "$zip" ] || { echo "ollama: go mod download gave no zip for $module@$version" >&2; exit 1; }
  (cd "$tmp" && unzip -q "$zip")
  mv "$tmp/$module@${version}" "$work"
  chmod -R u+w "$work"
  rm -rf "$tmp"
fi
vendor=$work/llama/llama.cpp/vendor
if [ ! -f "$vendor/miniaudio/miniaudio.h" ]; then
  echo "ollama ${version}: fetching miniaudio.h from $miniaudio_module"
  tmp=$(mktemp -d)
  dir=$(cd "$tmp" && GOMODCACHE="$tmp/modcache" GOFLAGS=-modcacherw \
    go mod download -json "$miniaudio_module" | sed -n 's#.*"Dir": *"\([^"]*\)".*#\1#p')
  mkdir -p "$vendor/miniaudio"
  cp "$dir/miniaudio.h" "$vendor/miniaudio/miniaudio.h.tmp"
  mv "$vendor/miniaudio/miniaudio.h.tmp" "$vendor/miniaudio/miniaudio.h"
  chmod -R u+w "$tmp"; rm -rf "$tmp"
fi
echo "ollama ${version}: compiling the server with the ggml CPU backend via cgo" \
  "(C/C++ of ggml and llama.cpp: ~3 min on 2 cores with a cold cache)"
cd "$work"
# -v: each package is logged as it compiles, so the heartbeat of install.sh shows where it is
CGO_ENABLED=1 nice -n 10 go build -v -trimpath \
  -ldflags "-s -w -X $module/version.Version=${version#v} -X $module/server.mode=release" \
  -o "$dest.tmp" .
mv "$dest.tmp" "$dest"
built=$(installed_version "$dest")
[ "$built" = "${version#v}" ] || { echo "ollama: $dest reports version '$built'" >&2; exit 1; }
echo "ollama ${version}: built $dest (ollama version is $built)"
