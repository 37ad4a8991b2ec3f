#!/usr/bin/env bash
# Unpack the dapr module source (github.com/dapr/dapr at VERSION) from the Go module proxy into
# DIR, once: build-daprd.sh and build-dapr-control-plane.sh both build from it, possibly at the
# same time, so the unpacking happens under a lock and is skipped when DIR exists.
# Usage: fetch-dapr-source.sh VERSION DIR   (e.g. v1.18.2 ~/.cache/support-inbox/src/dapr-v1.18.2)
set -euo pipefail
version=$1 work=$2
mkdir -p "$(dirname "$work")"
exec 9>"$work.lock"
flock 9
if [ ! -d "$work" ]; then
  echo "dapr ${version}: downloading module source from the Go module proxy"
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/dapr.zip" "${GOPROXY_URL:-https://proxy.golang.org}/github.com/dapr/dapr/@v/${version}.zip"
  (cd "$tmp" && unzip -q dapr.zip)
  mv "$tmp/github.com/dapr/dapr@${version}" "$work"
  chmod -R u+w "$work"
  rm -rf "$tmp"
fi
