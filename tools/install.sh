#!/usr/bin/env bash
# Install the real components the project runs, pinned, cached outside the repository,
# skipping what is already there. Debian packages and the builds run in parallel; each step
# says what it is doing, a heartbeat every 30 s says which are still running (with the last
# line of each one's log), and each result is reported as it ends.
#
# Usage: install.sh [all|run]
#   all  (`make tools`, `make test`, the default): everything, for the tests and the local
#        Kubernetes node as well.
#   run  (`make run`): only what `make run` starts: daprd, PostgreSQL, the broker and state
#        store named by BROKER and STATE_STORE (default redis), Ollama when OLLAMA=real, and
#        the Python env. Jaeger is
#        left out (`make run` traces only when it is there); so are Chromium and the cluster.
set -euo pipefail
group=${1:-all}
case $group in
  all | run) ;;
  *) echo "usage: $0 [all|run]   (got '$group')" >&2; exit 2 ;;
esac
: "${BROKER:=redis}" "${STATE_STORE:=redis}" "${OLLAMA:=auto}"
: "${INBOX_TOOLS_DIR:=$HOME/.cache/support-inbox}"
: "${DAPR_VERSION:=v1.18.2}"
# The Kubernetes release of every k8s binary and of the pause binary (build-kube.sh reads it too).
: "${KUBE_VERSION:=v1.37.1}"
export KUBE_VERSION
: "${COREDNS_VERSION:=v1.14.7}"
# The newest the Go module proxy serves; not in the checksum database, see the script.
: "${LOCAL_PATH_PROVISIONER_VERSION:=v0.0.37}"
: "${UV_VERSION:=0.13.9}"
: "${HELM_VERSION:=v3.22.0}"
# Must match KAFKA_VERSION in tools/devstack/kafka.py. 4.4.0 is listed on Maven Central but
# its kafka-tools-api is missing there.
: "${KAFKA_VERSION:=4.3.1}"
# Jaeger's Go module is tagged v1.x; this one is Jaeger v2.13.0 (the OTLP collector + query).
: "${JAEGER_VERSION:=v1.76.0}"
# The real model server, built for CPU (tests compare the stand-in with it).
: "${OLLAMA_VERSION:=v0.17.4}"
here=$(cd "$(dirname "$0")" && pwd)
logs="$INBOX_TOOLS_DIR/logs"
mkdir -p "$INBOX_TOOLS_DIR/bin" "$logs"
started=$(date +%s)
say() { printf '[tools %3ds] %s\n' "$(( $(date +%s) - started ))" "$*"; }

# The second line is the local Kubernetes node's (make cluster CLUSTER=local, tests/test_cluster.py):
# Docker to build images, mmdebstrap for their base, containerd and runc as the CRI, CNI plugins.
# The third: headers the Ollama build needs that its module zip lacks (see build-ollama.sh).
debian_packages=(postgresql redis-server rabbitmq-server nats-server chromium fonts-liberation
  docker.io mmdebstrap containerd runc containernetworking-plugins iptables conntrack
  nlohmann-json3-dev libstb-dev)
if [ "$group" = run ]; then
  debian_packages=(postgresql)
  [ "$BROKER" = redis ] || [ "$STATE_STORE" = redis ] && debian_packages+=(redis-server)
  [ "$BROKER" = rabbitmq ] && debian_packages+=(rabbitmq-server)
  [ "$BROKER" = jetstream ] && debian_packages+=(nats-server)
  [ "$OLLAMA" = real ] && debian_packages+=(nlohmann-json3-dev libstb-dev)
fi
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
names=() pids=() apt_pid=""
# build NAME WHAT COMMAND...: run COMMAND in the background, logged to $logs/NAME.log.
build() {
  local name=$1 what=$2; shift 2
  say "$what (log: $logs/$name.log)"
  "$@" >"$logs/$name.log" 2>&1 &
  names+=("$name") pids+=($!)
}
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  build apt "installing Debian packages: ${missing[*]}" bash -c \
    "$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ${missing[*]}"
  apt_pid=${pids[-1]}
else
    say "Debian packages present: ${debian_packages[*]}"
fi

bin=$INBOX_TOOLS_DIR/bin
say "installing the '$group' group$([ "$group" = run ] && echo " (BROKER=$BROKER, STATE_STORE=$STATE_STORE)")"
build daprd "daprd $DAPR_VERSION" "$here/build-daprd.sh" "$DAPR_VERSION" "$bin/daprd"
# after the Debian packages, whose headers it compiles against
build_ollama() {
  build ollama "Ollama $OLLAMA_VERSION (CPU, cgo)" bash -c \
    "while [ -n '$apt_pid' ] && kill -0 '$apt_pid' 2>/dev/null; do sleep 2; done
     exec '$here/build-ollama.sh' '$OLLAMA_VERSION' '$bin/ollama'"
}
if [ "$group" = run ]; then
  [ "$BROKER" = kafka ] && build kafka "Kafka $KAFKA_VERSION jars from Maven Central" \
    "$here/build-kafka.sh" "$KAFKA_VERSION" "$INBOX_TOOLS_DIR/kafka-$KAFKA_VERSION"
  [ "$OLLAMA" = real ] && build_ollama
else
build dapr-control-plane "Dapr control plane $DAPR_VERSION: operator, injector, sentry" \
  "$here/build-dapr-control-plane.sh" "$DAPR_VERSION" "$bin/dapr"
build kube "Kubernetes $KUBE_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) and etcd" \
  "$here/build-kube.sh" "$bin"
build pause "pause of Kubernetes $KUBE_VERSION (static, gcc)" "$here/build-pause.sh" "$KUBE_VERSION" "$bin/pause"
build coredns "CoreDNS $COREDNS_VERSION" "$here/build-coredns.sh" "$COREDNS_VERSION" "$bin/coredns"
build local-path-provisioner "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION" \
  "$here/build-local-path-provisioner.sh" "$LOCAL_PATH_PROVISIONER_VERSION" "$bin/local-path-provisioner"
build helm "helm $HELM_VERSION" "$here/build-helm.sh" "$HELM_VERSION" "$bin/helm"
build jaeger "jaeger $JAEGER_VERSION" "$here/build-jaeger.sh" "$JAEGER_VERSION" "$bin/jaeger"
build_ollama
build kafka "Kafka $KAFKA_VERSION jars from Maven Central" \
  "$here/build-kafka.sh" "$KAFKA_VERSION" "$INBOX_TOOLS_DIR/kafka-$KAFKA_VERSION"
fi

if ! command -v uv >/dev/null || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  say "installing uv $UV_VERSION from PyPI"
  python3 -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
# In the background like the builds, so the heartbeat covers it (a cold sync downloads
# every wheel from PyPI).
build python-env "Python environment from uv.lock (.venv)" bash -c \
  "uv sync --frozen --quiet && echo '.venv in sync with uv.lock'"

# Heartbeat: every 30 s, the builds still running. It ends by itself once none is; the EXIT
# trap ends it (and its sleep) earlier.
heartbeat() {
  local i s running
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  while :; do
    sleep 30 >/dev/null 2>&1 &
    sleeper=$!
    wait "$sleeper"
    running=()
    for i in "${!pids[@]}"; do
      s=$(ps -o stat= -p "${pids[$i]}" 2>/dev/null) && [ "${s:0:1}" != Z ] && running+=("${names[$i]}")
    done
    [ ${#running[@]} -gt 0 ] || return 0
    say "still running: ${running[*]}"
    for n in "${running[@]}"; do   # what each is doing: its log's last line
      printf '             %s: %s\n' "$n" "$(tail -c 2000 "$logs/$n.log" 2>/dev/null | tr '\r' '\n' | grep -v '^[[:space:]]*$' | tail -1 | cut -c1-100)"
    done
  done
}
heartbeat &
heartbeat_pid=$!
trap 'kill "$heartbeat_pid" 2>/dev/null || true' EXIT


fail=0
declare -A name_of=()
for i in "${!pids[@]}"; do name_of[${pids[$i]}]=${names[$i]}; done
while [ ${#name_of[@]} -gt 0 ]; do   # report each step as it ends
  rc=0 done_pid=
  wait -n -p done_pid "${!name_of[@]}" || rc=$?
  [ -n "$done_pid" ] || { say "lost track of: ${name_of[*]}"; fail=1; break; }
  n=${name_of[$done_pid]}; unset "name_of[$done_pid]"
  if [ "$rc" -eq 0 ]; then
    say "$n: $(tail -1 "$logs/$n.log")"
  else
    say "$n FAILED (exit $rc), last lines of $logs/$n.log:"; tail -20 "$logs/$n.log"; fail=1
  fi
done
[ "$fail" -eq 0 ] || exit 1
if [ "$group" = run ]; then
  say "done ('run' group; \`make tools\` adds Jaeger, Chromium and the cluster's tools):" \
    "daprd $("$bin/daprd" --version), PostgreSQL $(ls /usr/lib/postgresql | sort -n | tail -1)"
  exit 0
fi
say "done: daprd $("$bin/daprd" --version), $("$bin/kubelet" --version), $("$bin/coredns" -version | head -1), \
$("$bin/local-path-provisioner" --version), $("$bin/pause" -v), $(redis-server --version | cut -d' ' -f3), \
PostgreSQL $(ls /usr/lib/postgresql | sort -n | tail -1), $(chromium --version 2>/dev/null | head -1)"
