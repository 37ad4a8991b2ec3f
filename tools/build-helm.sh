#!/usr/bin/env bash
# Build helm from the Go module proxy (helm.sh/helm/v3 has no `replace` lines, so
# `go install` works), pinned, into DEST; skipped when that version is already there.
# Usage: build-helm.sh VERSION DEST   (e.g. v3.22.0 ~/.cache/support-inbox/bin/helm)
set -euo pipefail
version=$1 dest=$2
if [ -x "$dest" ] && [ "$("$dest" version --template '{{.Version}}' 2>/dev/null)" = "$version" ]; then
  echo "helm $version: already built at $dest"; exit 0
fi
echo "helm $version: compiling helm.sh/helm/v3/cmd/helm (a few minutes on a cold cache)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# helm's Makefile derives the Kubernetes version it assumes (for kubeVersion checks and
# `helm template`) from its client-go: v0.Y.Z means Kubernetes 1.Y.
client_go=$(curl -fsSL --retry 3 "${GOPROXY_URL:-https://proxy.golang.org}/helm.sh/helm/v3/@v/$version.mod" |
  awk '$1 == "k8s.io/client-go" { print $2 }')
minor=$(echo "$client_go" | cut -d. -f2)
[ -n "$minor" ] || { echo "helm: cannot read client-go from helm's go.mod" >&2; exit 1; }
ld="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ld="$ld -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
done
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$version"
mkdir -p "$(dirname "$dest")"
mv "$tmp/helm" "$dest"
echo "helm $version: built $dest ($("$dest" version --template '{{.Version}}'))"
