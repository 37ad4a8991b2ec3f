#!/usr/bin/env bash
# Build kube-apiserver, etcd and etcdctl from the Go module proxy, pinned, into DEST_BIN_DIR.
#
# Neither project can be built with `go install pkg@version`: k8s.io/kubernetes replaces every
# staging module (k8s.io/api, k8s.io/apiserver, ...) with ./staging/src/..., and the etcd server
# and etcdctl modules replace their sibling modules with ../api etc.; the module zips hold none
# of those paths. So each module zip is unpacked under DEST_BIN_DIR/../src and its go.mod is
# pointed at the published modules of the same release instead: for Kubernetes v1.Y.Z the
# staging modules are published as v0.Y.Z; etcd already requires its siblings at its own
# version, so its local replaces are simply dropped. The two builds run in parallel.
#
# Usage: build-kube.sh DEST_BIN_DIR   (e.g. ~/.cache/support-inbox/bin)
# Env:   KUBE_VERSION (default below), ETCD_VERSION (default: the one that Kubernetes release
#        pins in build/dependencies.yaml), GOPROXY_URL (default https://proxy.golang.org).
# Build logs: DEST_BIN_DIR/../logs/{kube-apiserver,etcd}-build.log
set -euo pipefail
: "${KUBE_VERSION:=v1.37.1}"   # newest stable release whose zip the proxy serves (v1.37.2: 403)
: "${ETCD_VERSION:=v3.7.0}"    # kubeadm DefaultEtcdVersion / build/dependencies.yaml of v1.37.1
: "${GOPROXY_URL:=https://proxy.golang.org}"

[ $# -eq 1 ] || { echo "usage: $0 DEST_BIN_DIR" >&2; exit 2; }
[[ $KUBE_VERSION =~ ^v1\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || { echo "build-kube: KUBE_VERSION=$KUBE_VERSION is not v1.Y.Z" >&2; exit 2; }
[[ $ETCD_VERSION =~ ^v3\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || { echo "build-kube: ETCD_VERSION=$ETCD_VERSION is not v3.Y.Z" >&2; exit 2; }
command -v go >/dev/null || { echo "build-kube: no go on PATH" >&2; exit 1; }
mkdir -p "$1"
bin=$(cd "$1" && pwd)
root=$(dirname "$bin")
src="$root/src" logs="$root/logs"
mkdir -p "$src" "$logs"
say() { printf '[build-kube %3ds] %s\n' "$SECONDS" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

# One build at a time per DEST (pytest-xdist workers may all call this).
exec 9>"$bin/.build-kube.lock"
flock 9

kube_ok() { [ -x "$bin/kube-apiserver" ] && [ "$("$bin/kube-apiserver" --version 2>/dev/null)" = "Kubernetes $KUBE_VERSION" ]; }
etcd_ok() {
  [ -x "$bin/etcd" ] && "$bin/etcd" --version 2>/dev/null | grep -qx "etcd Version: ${ETCD_VERSION#v}" &&
    [ -x "$bin/etcdctl" ] && "$bin/etcdctl" version 2>/dev/null | grep -qx "etcdctl version: ${ETCD_VERSION#v}"
}

# fetch MODULE VERSION DIR: unpack the module zip from the proxy into DIR (atomically).
fetch() {
  local mod=$1 ver=$2 dir=$3 tmp code
  [ -f "$dir/go.mod" ] && return 0
  tmp=$(mktemp -d "$src/.fetch.XXXXXX")
  code=$(curl -sSL --retry 3 -o "$tmp/m.zip" -w '%{http_code}' "$GOPROXY_URL/$mod/@v/$ver.zip") || code=${code:-curl-error}
  if [ "$code" != 200 ]; then
    rm -rf "$tmp"
    echo "build-kube: $GOPROXY_URL/$mod/@v/$ver.zip answered HTTP $code (this proxy lacks some versions; probe others with .../@v/vX.Y.Z.info and .zip)" >&2
    return 1
  fi
  (cd "$tmp" && unzip -q m.zip)
  rm -rf "$dir"
  mv "$tmp/$mod@$ver" "$dir"
  chmod -R u+w "$dir"
  rm -rf "$tmp"
}

# Local (./ or ../) replace targets of the go.mod in the current directory.
local_replaces() {
  go mod edit -json | python3 -c 'import json,sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("."): print(r["Old"]["Path"])'
}

build_kube() {
  local dir="$src/kubernetes-$KUBE_VERSION" staging=v0.${KUBE_VERSION#v1.} minor ld=() args=() m
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  fetch k8s.io/kubernetes "$KUBE_VERSION" "$dir"
  cd "$dir"
  rm -f go.work go.work.sum   # go.work would point back at ./staging
  for m in $(local_replaces); do args+=(-replace "$m=$m@$staging"); done
  if [ ${#args[@]} -gt 0 ]; then go mod edit "${args[@]}"; fi
  if grep -q '=> \./staging' go.mod; then echo "build-kube: go.mod still replaces with ./staging" >&2; return 1; fi
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=(-X "$pkg.gitVersion=$KUBE_VERSION" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor" -X "$pkg.gitTreeState=clean")
  done
  GOWORK=off CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w ${ld[*]}" \
    -o "$bin/kube-apiserver.tmp" ./cmd/kube-apiserver
  [ "$("$bin/kube-apiserver.tmp" --version)" = "Kubernetes $KUBE_VERSION" ] ||
    { echo "build-kube: built kube-apiserver reports '$("$bin/kube-apiserver.tmp" --version)'" >&2; return 1; }
  mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
}

build_etcd() {
  local mod name dir args m
  for mod in server etcdctl; do
    name=etcd; [ "$mod" = etcdctl ] && name=etcdctl
    dir="$src/etcd-$mod-$ETCD_VERSION"
    fetch "go.etcd.io/etcd/$mod/v3" "$ETCD_VERSION" "$dir"
    args=()
    for m in $(cd "$dir" && local_replaces); do args+=(-dropreplace "$m"); done
    if [ ${#args[@]} -gt 0 ]; then (cd "$dir" && go mod edit "${args[@]}"); fi
    (cd "$dir" && GOWORK=off CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" .)
  done
  "$bin/etcd.tmp" --version | grep -qx "etcd Version: ${ETCD_VERSION#v}" ||
    { echo "build-kube: built etcd reports '$("$bin/etcd.tmp" --version | head -1)'" >&2; return 1; }
  mv "$bin/etcd.tmp" "$bin/etcd"
  mv "$bin/etcdctl.tmp" "$bin/etcdctl"
}

pids=() names=()
if kube_ok; then
  say "kube-apiserver $KUBE_VERSION: already built at $bin/kube-apiserver"
else
  say "kube-apiserver $KUBE_VERSION: fetching k8s.io/kubernetes and compiling (~7 min cold on 2 cores; log: $logs/kube-apiserver-build.log)"
  ( set -x; build_kube ) >"$logs/kube-apiserver-build.log" 2>&1 &
  pids+=($!) names+=(kube-apiserver)
fi
if etcd_ok; then
  say "etcd $ETCD_VERSION: already built at $bin/etcd, $bin/etcdctl"
else
  say "etcd $ETCD_VERSION: fetching go.etcd.io/etcd/{server,etcdctl}/v3 and compiling (~1-2 min cold; log: $logs/etcd-build.log)"
  ( set -x; build_etcd ) >"$logs/etcd-build.log" 2>&1 &
  pids+=($!) names+=(etcd)
fi

fail=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    say "${names[$i]}: built"
  else
    say "${names[$i]} build FAILED; last lines of $logs/${names[$i]}-build.log:" >&2
    grep -v '^go: downloading' "$logs/${names[$i]}-build.log" | tail -20 | sed 's/^/    /' >&2
    fail=1
  fi
done
rm -f "$bin"/kube-apiserver.tmp "$bin"/etcd.tmp "$bin"/etcdctl.tmp
[ "$fail" -eq 0 ] || die "build failed (KUBE_VERSION=$KUBE_VERSION ETCD_VERSION=$ETCD_VERSION)"
kube_ok || die "$bin/kube-apiserver does not report $KUBE_VERSION"
etcd_ok || die "$bin/etcd does not report ${ETCD_VERSION#v}"
say "done: $("$bin/kube-apiserver" --version), etcd $("$bin/etcd" --version | sed -n 's/^etcd Version: //p'), etcdctl $("$bin/etcdctl" version | sed -n 's/^etcdctl version: //p') in $bin"
