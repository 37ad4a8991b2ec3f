#!/usr/bin/env bash
# Import the images of tools/build-images.sh (built already) into a containerd's k8s.io
# namespace, where the kubelet's CRI finds them: `docker save ... | ctr images import -`, one
# stream for all that need it (shared layers go once).
# An image is skipped when the stamp for this socket says its Docker image ID was imported and
# containerd still has the name; the stamp is $INBOX_TOOLS_DIR/images/loaded/<socket path>.
#
# Starts this machine's dockerd for the run when no Docker engine answers (tools/docker-engine.sh).
# Usage: load-images.sh CONTAINERD_SOCKET [IMAGE...]   (default: every image, build-images.sh --list)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${INBOX_TOOLS_DIR:=$HOME/.cache/support-inbox}"
sock=${1:?usage: load-images.sh CONTAINERD_SOCKET [IMAGE...]}
shift
started=$SECONDS
say() { printf '[load %4ds] %s\n' "$((SECONDS - started))" "$*"; }
[ -S "$sock" ] || { say "ERROR: $sock is not a socket (is that containerd running?)" >&2; exit 1; }
command -v ctr >/dev/null || { say "ERROR: ctr not found (Debian: apt-get install containerd)" >&2; exit 1; }
docker_cli=docker
if ! docker info >/dev/null 2>&1; then   # the images are in this machine's engine: start it
  "$root/tools/docker-engine.sh" start | sed 's/^/  /'
  trap '"$root/tools/docker-engine.sh" stop | sed "s/^/  /"' EXIT
fi
ctr_() { ctr --address "$sock" --namespace k8s.io "$@"; }

stamps=$INBOX_TOOLS_DIR/images/loaded
mkdir -p "$stamps"
stamp=$stamps/$(echo "$sock" | sed 's#^/##; s#[/ ]#_#g').txt
touch "$stamp"
present=$(ctr_ images ls -q) || { say "ERROR: ctr cannot reach $sock" >&2; exit 1; }

ids=() todo=() skipped=0
while read -r name; do
  id=$("$docker_cli" image inspect -f '{{.Id}}' "$name" 2>/dev/null) ||
    { say "ERROR: $name is not built (tools/build-images.sh)" >&2; exit 1; }
  if grep -qxF "$name $id" "$stamp" && grep -qxF "$name" <<<"$present"; then
    skipped=$((skipped + 1))
  else
    todo+=("$name"); ids+=("$id")
  fi
done < <(if [ $# -gt 0 ]; then printf '%s\n' "$@"; else "$root/tools/build-images.sh" --list; fi)

if [ ${#todo[@]} -eq 0 ]; then
  say "all $skipped images already in $sock (k8s.io)"; exit 0
fi
say "importing ${#todo[@]} images into $sock (k8s.io; $skipped already there): ${todo[*]}"
"$docker_cli" save "${todo[@]}" | ctr_ images import - >/dev/null
# the stamp: drop the old lines of these names, add the new IDs
for i in "${!todo[@]}"; do
  grep -vF "${todo[$i]} " "$stamp" >"$stamp.tmp" || true
  echo "${todo[$i]} ${ids[$i]}" >>"$stamp.tmp"
  mv "$stamp.tmp" "$stamp"
done
now=$(ctr_ images ls -q)
for n in "${todo[@]}"; do
  grep -qxF "$n" <<<"$now" || { say "ERROR: $n is not in containerd after the import" >&2; exit 1; }
done
say "imported ${#todo[@]} images in $((SECONDS - started))s"
