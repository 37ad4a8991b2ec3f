#!/usr/bin/env bash
# Build the Dapr control plane that a Kubernetes cluster runs (operator, sidecar injector,
# sentry) from the Go module proxy, pinned, into DEST_DIR; skipped when all three are there at
# that version.
#
# Like daprd (tools/build-daprd.sh), `go install` refuses the github.com/dapr/dapr module for its
# `replace` lines, so the same unpacked module zip, $DEST_DIR/../../src/dapr-VERSION, is built in
# place, with the same -X .../buildinfo.version stamp. placement and scheduler are left out: the
# project uses no actors, reminders or workflows. None of the three has a --version flag, and
# -trimpath keeps -ldflags out of `go version -m`; but each logs "Starting Dapr ... -- version X"
# first thing and then exits at once when started with an empty environment in an empty
# directory (no kubeconfig, no SIDECAR_IMAGE, no daprsystem config), so that is the version check.
#
# Usage: build-dapr-control-plane.sh VERSION DEST_DIR   (e.g. v1.18.2 ~/.cache/support-inbox/bin/dapr)
set -euo pipefail
version=$1 dest=$2
cmds=(operator injector sentry)
# stamp BINARY: the version it logs at start-up.
stamp() {
  local d; d=$(mktemp -d)
  (cd "$d" && env -i HOME="$d" timeout 10 "$1" 2>&1 | sed -n 's/.*Starting Dapr .* -- version \([^ ]*\) -- commit.*/\1/p' | head -1)
  rm -rf "$d"
}
missing=()
for c in "${cmds[@]}"; do
  [ -x "$dest/$c" ] && [ "$(stamp "$dest/$c")" = "${version#v}" ] || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "dapr control plane ${version}: already built in $dest: ${cmds[*]}"; exit 0
fi
mkdir -p "$dest"
src=$(cd "$dest/../.." && pwd)/src
work=$src/dapr-${version}
mkdir -p "$src"
"$(dirname "${BASH_SOURCE[0]}")/fetch-dapr-source.sh" "$version" "$work"
echo "dapr control plane ${version}: compiling ${missing[*]} (~2 min on an empty Go build cache, ~40 s after daprd, ~6 s warm)"
cd "$work"
rm -rf "$dest/.tmp"
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}" \
  -o "$dest/.tmp/" "${missing[@]/#/./cmd/}"
for c in "${missing[@]}"; do
  [ "$(stamp "$dest/.tmp/$c")" = "${version#v}" ] || { echo "dapr: built $c reports version '$(stamp "$dest/.tmp/$c")'" >&2; exit 1; }
  mv "$dest/.tmp/$c" "$dest/$c"
done
rm -rf "$dest/.tmp"
echo "dapr control plane ${version}: built ${missing[*]} in $dest (each reports version ${version#v})"
