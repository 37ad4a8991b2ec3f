#!/usr/bin/env bash
# Build the Kubernetes binaries of a single-node cluster (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl), etcd and etcdctl from
# the Go module proxy, pinned, into DEST_BIN_DIR; a binary already there at the right version is
# not rebuilt. Everything is built with CGO_ENABLED=0, so kubelet and kube-proxy are static too.
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
#        pins in build/dependencies.yaml), KUBE_COMMANDS (which cmd/ of k8s.io/kubernetes to
#        build; the tests only need kube-apiserver and kube-controller-manager, a real node the
#        other four, which add ~4 min to a cold build), GOPROXY_URL (default
#        https://proxy.golang.org).
# Build logs: DEST_BIN_DIR/../logs/{kube,etcd}-build.log
set -euo pipefail
: "${KUBE_VERSION:=v1.37.1}"   # newest stable release whose zip the proxy serves (v1.37.2: 403)
: "${ETCD_VERSION:=v3.7.0}"    # kubeadm DefaultEtcdVersion / build/dependencies.yaml of v1.37.1
: "${KUBE_COMMANDS:=kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl}"
: "${GOPROXY_URL:=https://proxy.golang.org}"

[ $# -eq 1 ] || { echo "usage: $0 DEST_BIN_DIR" >&2; exit 2; }
[[ $KUBE_VERSION =~ ^v1\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || { echo "build-kube: KUBE_VERSION=$KUBE_VERSION is not v1.Y.Z" >&2; exit 2; }
[[ $ETCD_VERSION =~ ^v3\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || { echo "build-kube: ETCD_VERSION=$ETCD_VERSION is not v3.Y.Z" >&2; exit 2; }
for c in go curl unzip python3 flock readelf; do
  command -v "$c" >/dev/null || { echo "build-kube: $c not found on PATH" >&2; exit 1; }
done
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

# version_of BINARY: the version it reports (Kubernetes v1.Y.Z, etcd 3.Y.Z), empty if none.
version_of() {
  local out
  [ -x "$1" ] || return 0
  local name=${1##*/}
  case ${name%.tmp} in
    etcd) out=$("$1" --version 2>/dev/null) || true; sed -n 's/^etcd Version: /etcd /p' <<<"$out" ;;
    etcdctl) out=$("$1" version 2>/dev/null) || true; sed -n 's/^etcdctl version: /etcd /p' <<<"$out" ;;
    kubectl) out=$("$1" version --client 2>/dev/null) || true; sed -n 's/^Client Version: /Kubernetes /p' <<<"$out" ;;
    *) "$1" --version 2>/dev/null || true ;;
  esac
}
kube_missing=() etcd_missing=()
for c in $KUBE_COMMANDS; do
  [ "$(version_of "$bin/$c")" = "Kubernetes $KUBE_VERSION" ] || kube_missing+=("$c")
done
for c in etcd etcdctl; do
  [ "$(version_of "$bin/$c")" = "etcd ${ETCD_VERSION#v}" ] || etcd_missing+=("$c")
done

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
  rm -rf "$bin/.kube.tmp"
  GOWORK=off CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w ${ld[*]}" \
    -o "$bin/.kube.tmp/" "${kube_missing[@]/#/./cmd/}"
  for c in "${kube_missing[@]}"; do
    [ "$(version_of "$bin/.kube.tmp/$c")" = "Kubernetes $KUBE_VERSION" ] ||
      { echo "build-kube: built $c reports '$(version_of "$bin/.kube.tmp/$c")'" >&2; return 1; }
    # A node's kubelet and kube-proxy run outside any image: they must not need a libc.
    if readelf -l "$bin/.kube.tmp/$c" | grep -q 'program interpreter'; then
      echo "build-kube: built $c is dynamically linked" >&2; return 1
    fi
  done
  for c in "${kube_missing[@]}"; do mv "$bin/.kube.tmp/$c" "$bin/$c"; done
  rm -rf "$bin/.kube.tmp"
}

build_etcd() {
  local mod name dir args m
  for name in "${etcd_missing[@]}"; do
    mod=server; [ "$name" = etcdctl ] && mod=etcdctl
    dir="$src/etcd-$mod-$ETCD_VERSION"
    fetch "go.etcd.io/etcd/$mod/v3" "$ETCD_VERSION" "$dir"
    args=()
    for m in $(cd "$dir" && local_replaces); do args+=(-dropreplace "$m"); done
    if [ ${#args[@]} -gt 0 ]; then (cd "$dir" && go mod edit "${args[@]}"); fi
    (cd "$dir" && GOWORK=off CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" .)
    [ "$(version_of "$bin/$name.tmp")" = "etcd ${ETCD_VERSION#v}" ] ||
      { echo "build-kube: built $name reports '$(version_of "$bin/$name.tmp")'" >&2; return 1; }
    mv "$bin/$name.tmp" "$bin/$name"
  done
}

pids=() names=() labels=()
if [ ${#kube_missing[@]} -eq 0 ]; then
  say "Kubernetes $KUBE_VERSION: already built: $KUBE_COMMANDS"
else
  say "Kubernetes $KUBE_VERSION: fetching k8s.io/kubernetes, compiling ${kube_missing[*]} (~7 min for all six on an empty Go build cache when nothing else runs, 30-60 s for the four node binaries on a cache warm from the other two, ~1 s when all are there; log: $logs/kube-build.log)"
  ( set -x; build_kube ) >"$logs/kube-build.log" 2>&1 &
  pids+=($!) names+=(kube) labels+=("Kubernetes $KUBE_VERSION: built ${kube_missing[*]}")
fi
if [ ${#etcd_missing[@]} -eq 0 ]; then
  say "etcd $ETCD_VERSION: already built: etcd etcdctl"
else
  say "etcd $ETCD_VERSION: fetching go.etcd.io/etcd/{server,etcdctl}/v3, compiling ${etcd_missing[*]} (~3 min on an empty Go cache, ~5 s warm; log: $logs/etcd-build.log)"
  ( set -x; build_etcd ) >"$logs/etcd-build.log" 2>&1 &
  pids+=($!) names+=(etcd) labels+=("etcd $ETCD_VERSION: built ${etcd_missing[*]}")
fi

fail=0
declare -A name_of=() label_of=()
for i in "${!pids[@]}"; do name_of[${pids[$i]}]=${names[$i]} label_of[${pids[$i]}]=${labels[$i]}; done
while [ ${#name_of[@]} -gt 0 ]; do   # report each build as it finishes
  rc=0; wait -n -p done_pid "${!name_of[@]}" || rc=$?
  n=${name_of[$done_pid]}; unset "name_of[$done_pid]"
  if [ "$rc" -eq 0 ]; then
    say "${label_of[$done_pid]}"
  else
    say "$n build FAILED (exit $rc); last lines of $logs/$n-build.log:" >&2
    grep -v -e '^go: downloading' -e '^+' "$logs/$n-build.log" | tail -20 | sed 's/^/    /' >&2
    fail=1
  fi
done
rm -rf "$bin/.kube.tmp" "$bin/etcd.tmp" "$bin/etcdctl.tmp"
[ "$fail" -eq 0 ] || die "build failed (KUBE_VERSION=$KUBE_VERSION ETCD_VERSION=$ETCD_VERSION)"
summary=()
for c in $KUBE_COMMANDS etcd etcdctl; do
  v=$(version_of "$bin/$c")
  case $v in "Kubernetes $KUBE_VERSION" | "etcd ${ETCD_VERSION#v}") summary+=("$c ${v#* }") ;;
    *) die "$bin/$c reports '${v:-nothing}'" ;; esac
done
say "done in $bin: $(IFS=,; echo "${summary[*]}" | sed 's/,/, /g')"
