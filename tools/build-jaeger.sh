#!/usr/bin/env bash
# Build Jaeger v2 (the OpenTelemetry-Collector-based `jaeger` binary, cmd/jaeger) from the Go
# module proxy, pinned, into DEST; skipped when that version is already there.
#
# Jaeger tags each release twice (v1.76.0 / v2.13.0); only the v1 tag is a Go module version,
# so VERSION is the module version and the binary reports the paired v2 version, read from the
# release's CHANGELOG.md. `go install ...@VERSION` refuses the module because its go.mod has a
# `replace` line, so the zip is downloaded and built in place. The Jaeger UI is a separate npm
# project that `make` compiles into cmd/query/app/ui/actual/; the module zip only has that
# directory's .gitignore, which still satisfies `//go:embed actual/*`, so the binary builds as
# is and serves upstream's placeholder page at / while the query API (/api/...) works fully.
#
# Usage: build-jaeger.sh VERSION DEST   (e.g. v1.76.0 ~/.cache/support-inbox/bin/jaeger)
set -euo pipefail
version=$1 dest=$2
module=github.com/jaegertracing/jaeger
# `jaeger version` prints {"gitCommit":...,"gitVersion":...}; gitCommit is stamped with the tag.
if [ -x "$dest" ] && "$dest" version 2>/dev/null | grep -q "\"gitCommit\":\"$version\""; then
  echo "jaeger ${version}: already built at $dest"; exit 0
fi
work=$(dirname "$dest")/../src/jaeger-${version}
mkdir -p "$(dirname "$dest")" "$(dirname "$work")"
if [ ! -d "$work" ]; then
  echo "jaeger ${version}: downloading module source from the Go module proxy"
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/jaeger.zip" "${GOPROXY_URL:-https://proxy.golang.org}/$module/@v/${version}.zip"
  (cd "$tmp" && unzip -q jaeger.zip)
  mv "$tmp/$module@${version}" "$work"
  chmod -R u+w "$work"
  rm -rf "$tmp"
fi
v2=$(sed -n "s#^${version//./\\.} / \(v2\.[0-9.]*\) .*#\1#p" "$work/CHANGELOG.md" | head -1)
[ -n "$v2" ] || { echo "jaeger: no '${version} / v2.x.y' heading in CHANGELOG.md" >&2; exit 1; }
date=$(curl -fsSL --retry 3 "${GOPROXY_URL:-https://proxy.golang.org}/$module/@v/${version}.info" |
  sed -n 's#.*"Time": *"\([^"]*\)".*#\1#p')
echo "jaeger ${version}: compiling cmd/jaeger as Jaeger ${v2} without the UI (several minutes on a cold cache)"
cd "$work"
pkg=$module/internal/version
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X $pkg.commitSHA=${version} -X $pkg.latestVersion=${v2} -X $pkg.date=${date}" \
  -o "$dest.tmp" ./cmd/jaeger
mv "$dest.tmp" "$dest"
echo "jaeger ${version}: built $dest ($("$dest" version 2>/dev/null))"
