#!/usr/bin/env bash
# Build the `pause` binary of the pod sandbox image (containerd's sandbox_image) from
# kubernetes' build/pause/linux/pause.c, statically linked, into DEST; skipped when that version
# is already there. Upstream builds it the same way (gcc -Os -Wall -Werror -static, stripped) in
# its cross-compile image and stamps VERSION=v<TAG>-<kubernetes tag>, TAG being the pause
# version in build/pause/Makefile (3.10.2 in Kubernetes v1.37.1).
#
# The source is the k8s.io/kubernetes module zip that build-kube.sh unpacks under
# DEST/../../src/kubernetes-VERSION; while that is not there (both run in parallel on a cold
# cache) the two files are read straight out of the zip from the Go module proxy.
# Usage: build-pause.sh KUBE_VERSION DEST   (e.g. v1.37.1 ~/.cache/support-inbox/bin/pause)
set -euo pipefail
kube=$1 dest=$2
for c in gcc strip readelf curl unzip; do
  command -v "$c" >/dev/null || { echo "pause: $c not found on PATH (apt-get install gcc libc6-dev binutils)" >&2; exit 1; }
done
# The pause TAG is fixed by the Kubernetes release, so "pause.c v<any>-KUBE_VERSION" is current.
if [ -x "$dest" ] && [[ $("$dest" -v 2>/dev/null) == "pause.c v"*"-$kube" ]]; then
  echo "pause ($kube): already built at $dest ($("$dest" -v))"; exit 0
fi
tree=$(dirname "$dest")/../src/kubernetes-$kube
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -f "$tree/build/pause/linux/pause.c" ] && [ -f "$tree/build/pause/Makefile" ]; then
  cp "$tree/build/pause/linux/pause.c" "$tree/build/pause/Makefile" "$tmp/"
else
  echo "pause: reading build/pause from the k8s.io/kubernetes $kube module zip"
  curl -fsSL --retry 3 -o "$tmp/k8s.zip" "${GOPROXY_URL:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$kube.zip"
  unzip -q -j -d "$tmp" "$tmp/k8s.zip" "k8s.io/kubernetes@$kube/build/pause/linux/pause.c" \
    "k8s.io/kubernetes@$kube/build/pause/Makefile"
fi
tag=$(sed -n 's/^TAG ?= *//p' "$tmp/Makefile")
[ -n "$tag" ] || { echo "pause: no 'TAG ?=' in build/pause/Makefile" >&2; exit 1; }
want="pause.c v$tag-$kube"
echo "pause $tag ($kube): compiling build/pause/linux/pause.c with gcc -static"
gcc -Os -Wall -Werror -static -DVERSION="v$tag-$kube" -o "$tmp/pause" "$tmp/pause.c"
strip "$tmp/pause"
if readelf -l "$tmp/pause" | grep -q 'program interpreter'; then
  echo "pause: the binary is not static (is libc6-dev's libc.a there?)" >&2; exit 1
fi
[ "$("$tmp/pause" -v)" = "$want" ] || { echo "pause: built binary reports '$("$tmp/pause" -v)'" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
mv "$tmp/pause" "$dest"
echo "pause $tag ($kube): built $dest ($("$dest" -v), static, $(stat -c %s "$dest") bytes)"
