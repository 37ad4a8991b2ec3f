#!/usr/bin/env bash
# `make images`: build every container image a single-node cluster needs to run the chart, on
# this machine and without any image registry, then (with --load) import them into a containerd.
#
#   localhost/support-inbox/python:3.11-bookworm  Debian bookworm + Debian's python3.11, made by
#                                   mmdebstrap and `docker import`; the base of everything below
#   localhost/support-inbox/uv:UV_VERSION         the static uv binary from its PyPI wheel
#   localhost/support-inbox/node:N-bookworm        this machine's Node.js + npm (the gateway's
#                                                  frontend stage)
#   $IMAGE_REGISTRY/{gateway,messaging,ai-worker,operator}:$IMAGE_TAG
#                                   services/*/Dockerfile, with the three images above as the
#                                   PYTHON_IMAGE / UV_IMAGE / NODE_IMAGE build arguments
#   localhost/support-inbox/{postgresql:15,redis:7,jaeger:2.x,ollama:0.x,
#     daprd|operator|injector|sentry:1.18.2,coredns:1.14,local-path-provisioner:v0.0.37,pause:3.10}
#                                   k8s/images/*/Dockerfile: Debian packages, or binaries from
#                                   `make tools` in $INBOX_TOOLS_DIR/bin
#   localhost/support-inbox/model-inbox-tiny:MODEL_TAG
#                                   the test model (tools/make-model.py through
#                                   `python -m devstack.ollama model`) as /model/{model.gguf,
#                                   Modelfile}, for the chart's ollama.modelSource=file
#
# Incremental: the base image is rebuilt only when its inputs change (a label holds their hash),
# the rest by Docker's layer cache; a run with nothing changed takes seconds.
# A Docker engine is needed: when none answers, tools/docker-engine.sh starts this machine's
# dockerd for the run and stops it afterwards (INBOX_KEEP_DOCKER=1 leaves it running).
#
# Usage: build-images.sh [--load CONTAINERD_SOCKET] [--list]
#   --load SOCKET  then import every image into that containerd's k8s.io namespace
#                  (tools/load-images.sh; images already there are skipped)
#   --list         print the image names and exit
# Env: IMAGE_REGISTRY (ghcr.io/support-inbox), IMAGE_TAG (0.1.0), MODEL_TAG (0.1.0), INBOX_TOOLS_DIR,
#      INBOX_EXTRA_CA_CERTS (CA files trusted in the images' build steps; default: those in
#      /usr/local/share/ca-certificates, for TLS-intercepting proxies; "none" for none).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${INBOX_TOOLS_DIR:=$HOME/.cache/support-inbox}"
: "${IMAGE_REGISTRY:=ghcr.io/support-inbox}"
: "${IMAGE_TAG:=0.1.0}"
: "${MODEL_TAG:=0.1.0}"
: "${UV_VERSION:=0.13.9}"
: "${DAPR_VERSION:=v1.18.2}"
: "${LOCAL_PATH_PROVISIONER_VERSION:=v0.0.37}"
export INBOX_TOOLS_DIR

L=localhost/support-inbox
BASE=$L/python:3.11-bookworm
UV=$L/uv:$UV_VERSION
NODE_MAJOR=$( (node --version 2>/dev/null || echo v20) | sed 's/^v\([0-9]*\).*/\1/')
NODE=$L/node:$NODE_MAJOR-bookworm
STATIC=$L/static:nonroot
SERVICES=(gateway messaging ai-worker operator)
DAPR_TAG=${DAPR_VERSION#v}
DAPR_NAMES=(daprd operator injector sentry)   # what Dapr's chart asks for: {registry}/NAME:{tag}
bin=$INBOX_TOOLS_DIR/bin
work=$INBOX_TOOLS_DIR/images
logs=$INBOX_TOOLS_DIR/logs/images

# Every image name this script makes, all tags.
list() {
  echo "$BASE"; echo "$UV"; echo "$NODE"; echo "$STATIC"
  local s n
  for s in "${SERVICES[@]}"; do echo "$IMAGE_REGISTRY/$s:$IMAGE_TAG"; done
  echo "$L/postgresql:15"; echo "$L/redis:7"; echo "$L/nats:2"; echo "$L/jaeger:$(jaeger_tag)"
  echo "$L/ollama:$(ollama_tag)"; echo "$L/model-inbox-tiny:$MODEL_TAG"
  for n in "${DAPR_NAMES[@]}"; do echo "$L/$n:$DAPR_TAG"; done
  echo "$L/coredns:1.14"; echo "$L/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION"
  echo "$L/pause:3.10"
}
# The Ollama server's version: `ollama --version` with no server to ask prints
# "Warning: client version is 0.17.4" (OLLAMA_HOST at a closed port, so it never waits).
ollama_tag() {
  local v
  v=$(OLLAMA_HOST=127.0.0.1:9 "$bin/ollama" --version 2>&1 | sed -n 's#.*version is \([0-9][^ ]*\)$#\1#p' | tail -1)
  echo "${v:-0.17.4}"
}
# Jaeger v2's version, which `jaeger version` reports ({"gitVersion":"v2.13.0",...}).
jaeger_tag() {
  local v
  v=$("$bin/jaeger" version 2>/dev/null | sed -n 's/.*"gitVersion":"v\([^"]*\)".*/\1/p' | head -1)
  echo "${v:-2.13.0}"
}

load=
case "${1:-}" in
  --list) list; exit 0 ;;
  --load) [ -n "${2:-}" ] || { echo "usage: $0 [--load CONTAINERD_SOCKET] [--list]" >&2; exit 2; }; load=$2 ;;
  "") ;;
  *) echo "usage: $0 [--load CONTAINERD_SOCKET] [--list]" >&2; exit 2 ;;
esac

started=$SECONDS
say() { printf '[images %4ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }
mkdir -p "$work" "$logs"
# One run at a time: a run that started the engine stops it at its end, under another's feet.
exec 8>"$work/.build.lock"
if ! flock -n 8; then say "waiting for another build-images.sh run to finish"; flock 8; fi

# ---- the engine and a client that can drive BuildKit
engine_ours=
if ! docker info >/dev/null 2>&1; then
  "$root/tools/docker-engine.sh" start | sed 's/^/  /'
  engine_ours=1
fi
cleanup() {
  if [ -n "$engine_ours" ] && [ -z "${INBOX_KEEP_DOCKER:-}" ]; then INBOX_BUILD_LOCK_HELD=1 "$root/tools/docker-engine.sh" stop | sed 's/^/  /'; fi
}
trap cleanup EXIT
# BuildKit is needed (RUN --mount=type=cache). A client from 23 on drives it only through the
# buildx plugin; one before 23 (Debian bookworm's docker.io is 20.10) has it built in, with
# DOCKER_BUILDKIT=1.
docker_cli=
for c in docker /usr/bin/docker; do
  command -v "$c" >/dev/null || continue
  if "$c" buildx version >/dev/null 2>&1; then docker_cli=$c; break; fi
  major=$("$c" version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
  if [ -n "$major" ] && [ "$major" -lt 23 ]; then docker_cli=$c; break; fi
done
[ -n "$docker_cli" ] || die "no docker client that can use BuildKit: install the buildx plugin (https://github.com/docker/buildx), or Debian's docker.io (its 20.10 client has BuildKit built in)"
export DOCKER_BUILDKIT=1
dk() { "$docker_cli" "$@"; }
image_mb() { dk image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1 / 1e6}'; }

# build NAME CONTEXT DOCKERFILE "TAG..." [docker build args...]
# The Dockerfile goes in on stdin without a leading `# syntax=` line: that line makes BuildKit
# fetch the named Dockerfile frontend image from Docker Hub, which is unreachable here; the
# frontend built into the engine (Docker 20.10 on) knows everything our Dockerfiles use.
# `--network host`: RUN steps reach PyPI, npm and Debian through the host's network (the engine
# runs without a bridge, see tools/docker-engine.sh).
build() {
  local name=$1 ctx=$2 file=$3 tags=$4 t t0=$SECONDS args=()
  shift 4
  for t in $tags; do args+=(-t "$t"); done
  if ! sed '1{/^#[[:space:]]*syntax=/d}' "$file" |
       dk build --network host --progress plain -f - "${args[@]}" "$@" "$ctx" >"$logs/$name.log" 2>&1; then
    tail -30 "$logs/$name.log" >&2
    die "$name: docker build failed (log: $logs/$name.log)"
  fi
  local first=${tags%% *} cached=""
  # "(cached)" when no step of the Dockerfile (a "#N [stage i/n] ..." vertex, FROM aside) ran.
  awk '/^#[0-9]+ \[/ && !/\[internal\]/ && !/\] FROM / {v[$1] = 1}
       /^#[0-9]+ DONE/ && ($1 in v) {ran++} END {exit ran > 0}' "$logs/$name.log" && cached=" (cached)"
  say "$name: $((SECONDS - t0))s$cached  $tags  $(image_mb "$first") MB"
}
# A build context: a copy of k8s/images/NAME plus the given files (hard links when possible).
context() {
  local name=$1 dir=$work/ctx/$1 f
  shift
  rm -rf "$dir"; mkdir -p "$dir"
  cp -a "$root/k8s/images/$name/." "$dir/"
  for f in "$@"; do ln -f "$f" "$dir/" 2>/dev/null || cp -a "$f" "$dir/"; done
  echo "$dir"
}
missing=()
need_bin() { # IMAGE FILE BUILT_BY
  [ -x "$2" ] && return 0
  missing+=("$1: $2 is missing (built by $3)"); return 1
}

say "Docker engine: $(dk version -f '{{.Server.Version}}'), client $docker_cli $(dk version -f '{{.Client.Version}}'), logs in $logs"

# ---- 1. the base image: mmdebstrap | docker import
base_packages=(python3.11 python3 passwd ca-certificates netbase)
base_sources=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# The CAs this machine trusts beyond Debian's (a TLS-intercepting proxy's): build steps in the
# images reach PyPI and npm through the same proxy.
extra_ca=()
if [ "${INBOX_EXTRA_CA_CERTS:-}" = none ]; then :
elif [ -n "${INBOX_EXTRA_CA_CERTS:-}" ]; then read -r -a extra_ca <<<"$INBOX_EXTRA_CA_CERTS"
elif [ -d /usr/local/share/ca-certificates ]; then
  mapfile -t extra_ca < <(find /usr/local/share/ca-certificates -type f -name '*.crt' | sort)
fi
base_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
  SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
base_input=$( { printf '%s\n' v1 "${base_packages[@]}" "${base_sources[@]}" "${base_env[@]}"
  [ ${#extra_ca[@]} -eq 0 ] || cat "${extra_ca[@]}"; } | sha256sum | cut -c1-16)
t0=$SECONDS
if [ "$(dk image inspect -f '{{index .Config.Labels "support-inbox.input"}}' "$BASE" 2>/dev/null)" = "$base_input" ]; then
  say "base: up to date  $BASE  $(image_mb "$BASE") MB"
else
  command -v mmdebstrap >/dev/null || die "the base image needs mmdebstrap (apt-get install mmdebstrap)"
  hooks=()
  if [ ${#extra_ca[@]} -gt 0 ]; then
    say "base: adding this machine's extra CA certificates: ${extra_ca[*]}"
    # shellcheck disable=SC2016  # "$1" is mmdebstrap's: the root directory it builds
    hooks=(--customize-hook="copy-in ${extra_ca[*]} /usr/local/share/ca-certificates/"
      --customize-hook='chroot "$1" update-ca-certificates --fresh >/dev/null')
  fi
  say "base: mmdebstrap bookworm with ${base_packages[*]} (about 3 minutes; log: $logs/base.log)"
  rm -f "$work/base.tar"
  if ! mmdebstrap --variant=apt --include="$(IFS=,; echo "${base_packages[*]}")" \
      --aptopt='APT::Install-Recommends "false"' --aptopt='APT::Install-Suggests "false"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      "${hooks[@]}" bookworm "$work/base.tar" "${base_sources[@]}" >"$logs/base.log" 2>&1; then
    tail -30 "$logs/base.log" >&2; die "base: mmdebstrap failed (log: $logs/base.log)"
  fi
  changes=(--change "LABEL support-inbox.input=$base_input" --change 'CMD ["python3"]')
  for e in "${base_env[@]}"; do changes+=(--change "ENV $e"); done
  dk import "${changes[@]}" "$work/base.tar" "$BASE" >/dev/null
  rm -f "$work/base.tar"
  say "base: $((SECONDS - t0))s  $BASE  $(image_mb "$BASE") MB"
fi

# ---- 2. uv: the static (musl) binary from the uv wheel on PyPI, FROM scratch
uv_dir=$work/uv-$UV_VERSION
if [ ! -x "$uv_dir/uv" ]; then
  arch=$(uname -m)
  say "uv: downloading the uv==$UV_VERSION musllinux wheel from PyPI"
  rm -rf "$uv_dir.tmp"; mkdir -p "$uv_dir.tmp"
  # uv installs the musl wheel for us: a python3 may be a virtualenv's, without pip
  uv pip install --quiet --no-deps --only-binary :all: --python-platform "$arch-unknown-linux-musl" \
    --target "$uv_dir.tmp/wheel" "uv==$UV_VERSION" >"$logs/uv-download.log" 2>&1 ||
    { cat "$logs/uv-download.log" >&2; die "uv: installing the uv==$UV_VERSION musl wheel failed"; }
  mv "$uv_dir.tmp/wheel/bin/uv" "$uv_dir.tmp/wheel/bin/uvx" "$uv_dir.tmp/" && rm -rf "$uv_dir.tmp/wheel"
  chmod 755 "$uv_dir.tmp/uv" "$uv_dir.tmp/uvx"
  rm -rf "$uv_dir"; mv "$uv_dir.tmp" "$uv_dir"
fi
build uv "$(context uv "$uv_dir/uv" "$uv_dir/uvx")" "$root/k8s/images/uv/Dockerfile" "$UV"

# ---- 3. node: this machine's Node.js and npm, on the base image
node_bin=$(command -v node || true)
[ -n "$node_bin" ] || die "node: the gateway's frontend stage needs Node.js >= 18 on this machine (make tools / apt-get install nodejs npm)"
node_bin=$(readlink -f "$node_bin")
npm_dir=$(cd "$(dirname "$node_bin")/../lib/node_modules/npm" 2>/dev/null && pwd) ||
  die "node: no npm next to $node_bin (expected $(dirname "$node_bin")/../lib/node_modules/npm)"
ctx=$(context node)
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/usr/local/lib/node_modules"
ln -f "$node_bin" "$ctx/rootfs/usr/local/bin/node" 2>/dev/null || cp -a "$node_bin" "$ctx/rootfs/usr/local/bin/node"
cp -al "$npm_dir" "$ctx/rootfs/usr/local/lib/node_modules/npm" 2>/dev/null || cp -a "$npm_dir" "$ctx/rootfs/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ctx/rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ctx/rootfs/usr/local/bin/npx"
build node "$ctx" "$root/k8s/images/node/Dockerfile" "$NODE" --build-arg "BASE_IMAGE=$BASE"

# ---- 4. the four services, from their own Dockerfiles
for s in "${SERVICES[@]}"; do
  args=(--build-arg "PYTHON_IMAGE=$BASE" --build-arg "UV_IMAGE=$UV")
  [ "$s" = gateway ] && args+=(--build-arg "NODE_IMAGE=$NODE")
  build "$s" "$root" "$root/services/$s/Dockerfile" "$IMAGE_REGISTRY/$s:$IMAGE_TAG" "${args[@]}"
done

# ---- 5. what the chart and the cluster run besides
build static "$(context static)" "$root/k8s/images/static/Dockerfile" "$STATIC" --build-arg "BASE_IMAGE=$BASE"
build postgresql "$(context postgresql)" "$root/k8s/images/postgresql/Dockerfile" "$L/postgresql:15" --build-arg "BASE_IMAGE=$BASE"
build redis "$(context redis)" "$root/k8s/images/redis/Dockerfile" "$L/redis:7" --build-arg "BASE_IMAGE=$BASE"
build nats "$(context nats)" "$root/k8s/images/nats/Dockerfile" "$L/nats:2" --build-arg "BASE_IMAGE=$BASE"

# The real Ollama server, and the test model as an image the chart's create Job copies from.
if need_bin ollama "$bin/ollama" "tools/build-ollama.sh, make tools"; then
  build ollama "$(context ollama "$bin/ollama")" "$root/k8s/images/ollama/Dockerfile" "$L/ollama:$(ollama_tag)" --build-arg "BASE_IMAGE=$BASE"
fi
# ensure_model() remakes the files only when tools/make-model.py or the seed data changed, so
# an unchanged model keeps its layer cached.
uv_cmd=$(command -v uv || echo "$uv_dir/uv")
model_dir=$(cd "$root" && PYTHONPATH=tools "$uv_cmd" run --frozen --quiet python -m devstack.ollama model 2>"$logs/model.log") ||
  { tail -30 "$logs/model.log" >&2; die "model: python -m devstack.ollama model failed (log: $logs/model.log)"; }
ctx=$(context model "$model_dir/model.gguf" "$model_dir/Modelfile")
chmod 0644 "$ctx/model.gguf" "$ctx/Modelfile"
build model "$ctx" "$root/k8s/images/model/Dockerfile" "$L/model-inbox-tiny:$MODEL_TAG" --build-arg "BASE_IMAGE=$BASE"

if need_bin jaeger "$bin/jaeger" "tools/build-jaeger.sh, make tools"; then
  build jaeger "$(context jaeger "$bin/jaeger")" "$root/k8s/images/jaeger/Dockerfile" "$L/jaeger:$(jaeger_tag)" --build-arg "STATIC_IMAGE=$STATIC"
fi

dapr_files=("$bin/daprd")
dapr_ok=1
need_bin dapr "$bin/daprd" "tools/build-daprd.sh, make tools" || dapr_ok=
for c in operator injector sentry; do
  need_bin dapr "$bin/dapr/$c" "tools/build-dapr-control-plane.sh, make tools" || dapr_ok=
  dapr_files+=("$bin/dapr/$c")
done
if [ -n "$dapr_ok" ]; then
  tags=""; for n in "${DAPR_NAMES[@]}"; do tags+="$L/$n:$DAPR_TAG "; done
  build dapr "$(context dapr "${dapr_files[@]}")" "$root/k8s/images/dapr/Dockerfile" "${tags% }" --build-arg "STATIC_IMAGE=$STATIC"
fi

if need_bin coredns "$bin/coredns" "tools/build-coredns.sh, make tools"; then
  build coredns "$(context coredns "$bin/coredns")" "$root/k8s/images/coredns/Dockerfile" "$L/coredns:1.14" --build-arg "STATIC_IMAGE=$STATIC"
fi
if need_bin local-path-provisioner "$bin/local-path-provisioner" "tools/build-local-path-provisioner.sh, make tools"; then
  build local-path-provisioner "$(context local-path-provisioner "$bin/local-path-provisioner")" \
    "$root/k8s/images/local-path-provisioner/Dockerfile" "$L/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION" --build-arg "STATIC_IMAGE=$STATIC"
fi
if need_bin pause "$bin/pause" "tools/build-pause.sh, make tools"; then
  build pause "$(context pause "$bin/pause")" "$root/k8s/images/pause/Dockerfile" "$L/pause:3.10"
fi

if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do say "MISSING $m" >&2; done
  die "${#missing[@]} binaries missing: run make tools (the other images are built)"
fi
say "all images built in $((SECONDS - started))s"

if [ -n "$load" ]; then
  "$root/tools/load-images.sh" "$load"
fi
