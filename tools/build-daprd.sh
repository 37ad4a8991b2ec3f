#!/usr/bin/env bash
# Build daprd from the Go module proxy with only the components Support Inbox uses.
#
# `go install github.com/dapr/dapr/cmd/daprd@vX` refuses modules whose go.mod has `replace`
# lines, so the module zip is downloaded and built in place. Every component registration in
# cmd/daprd/components/ carries `//go:build allcomponents || stablecomponents`; the files of the
# components below get an extra `inbox` tag and the build uses `-tags inbox`, which links a
# daprd of a few dozen MB in a fraction of the full build time.
#
# Usage: build-daprd.sh VERSION DEST   (e.g. v1.18.2 ~/.cache/support-inbox/bin/daprd)
set -euo pipefail
version=$1 dest=$2
components=(
  pubsub_redis pubsub_rabbitmq pubsub_kafka pubsub_jetstream pubsub_in-memory
  state_postgres state_redis state_in-memory
  nameresolution_mdns nameresolution_kubernetes
  secretstores_local_env secretstores_local_file secretstores_kubernetes
)
if [ -x "$dest" ] && "$dest" --version 2>/dev/null | grep -qx "${version#v}"; then
  echo "daprd ${version}: already built at $dest"; exit 0
fi
work=$(dirname "$dest")/../src/dapr-${version}
mkdir -p "$(dirname "$dest")" "$(dirname "$work")"
"$(dirname "${BASH_SOURCE[0]}")/fetch-dapr-source.sh" "$version" "$work"
for c in "${components[@]}"; do
  f="$work/cmd/daprd/components/$c.go"
  sed -i '1s#^//go:build \(.*\)$#//go:build inbox || \1#; 1s#inbox || inbox || #inbox || #' "$f"
  head -1 "$f" | grep -q inbox || { echo "daprd: $f has no build tag line" >&2; exit 1; }
done
# zz_notag.go panics at start-up unless one of upstream's tags is set; exempt our tag too.
sed -i '1s#^//go:build !allcomponents && !stablecomponents$#//go:build !allcomponents \&\& !stablecomponents \&\& !inbox#' \
  "$work/cmd/daprd/components/zz_notag.go"
head -1 "$work/cmd/daprd/components/zz_notag.go" | grep -q '!inbox' || { echo "daprd: cannot retag zz_notag.go" >&2; exit 1; }
echo "daprd ${version}: compiling cmd/daprd with ${#components[@]} components (several minutes on a cold cache)"
cd "$work"
# -v: each package is logged as it compiles, so the heartbeat of install.sh shows where it is
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -v -tags inbox -trimpath \
  -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}" \
  -o "$dest.tmp" ./cmd/daprd
mv "$dest.tmp" "$dest"
echo "daprd ${version}: built $dest ($("$dest" --version))"
