#!/usr/bin/env bash
# Build CoreDNS, the cluster DNS of the single-node cluster (the kubelet's clusterDNS), from the
# Go module proxy, pinned, into DEST; skipped when that version is already there.
#
# github.com/coredns/coredns has no `replace` lines, so `go install` works. Its main package is
# the module root, with upstream's default plugin set (kubernetes, forward, cache, ...). The
# version comes from coremain.CoreVersion in the source; upstream's Makefile stamps only the git
# commit, which a module zip lacks, so the tag is stamped in its place.
# Usage: build-coredns.sh VERSION DEST   (e.g. v1.14.7 ~/.cache/support-inbox/bin/coredns)
set -euo pipefail
version=$1 dest=$2
# `coredns -version` prints "CoreDNS-1.14.7" and then "linux/amd64, go1.26.8, <commit>".
if [ -x "$dest" ] && "$dest" -version 2>/dev/null | grep -qx "CoreDNS-${version#v}"; then
  echo "coredns $version: already built at $dest"; exit 0
fi
echo "coredns $version: compiling github.com/coredns/coredns (~2 min on an empty Go build cache, ~5 s warm)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$version" \
  "github.com/coredns/coredns@$version"
"$tmp/coredns" -version | grep -qx "CoreDNS-${version#v}" ||
  { echo "coredns: built binary reports '$("$tmp/coredns" -version | head -1)'" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
mv "$tmp/coredns" "$dest"
echo "coredns $version: built $dest ($("$dest" -version | head -1))"
