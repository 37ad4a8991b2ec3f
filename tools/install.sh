#!/usr/bin/env bash
# `make tools`: install every real component the project runs, pinned, cached outside the
# repository, skipping what is already there. Debian packages and the daprd build run in
# parallel; each step says what it is doing.
set -euo pipefail
: "${INBOX_TOOLS_DIR:=$HOME/.cache/support-inbox}"
: "${DAPR_VERSION:=v1.18.2}"
: "${UV_VERSION:=0.13.9}"
: "${HELM_VERSION:=v3.22.0}"
# Must match KAFKA_VERSION in tools/devstack/kafka.py. 4.4.0 is listed on Maven Central but
# its kafka-tools-api is missing there.
: "${KAFKA_VERSION:=4.3.1}"
# Jaeger's Go module is tagged v1.x; this one is Jaeger v2.13.0 (the OTLP collector + query).
: "${JAEGER_VERSION:=v1.76.0}"
here=$(cd "$(dirname "$0")" && pwd)
logs="$INBOX_TOOLS_DIR/logs"
mkdir -p "$INBOX_TOOLS_DIR/bin" "$logs"
started=$(date +%s)
say() { printf '[tools %3ds] %s\n' "$(( $(date +%s) - started ))" "$*"; }

debian_packages=(postgresql redis-server rabbitmq-server nats-server chromium fonts-liberation)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_pid=
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]} (log: $logs/apt.log)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  ( $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" ) >"$logs/apt.log" 2>&1 &
  apt_pid=$!
else
  say "Debian packages present: ${debian_packages[*]}"
fi

say "daprd $DAPR_VERSION (log: $logs/daprd.log)"
"$here/build-daprd.sh" "$DAPR_VERSION" "$INBOX_TOOLS_DIR/bin/daprd" >"$logs/daprd.log" 2>&1 &
daprd_pid=$!
say "kube-apiserver, kube-controller-manager and etcd (log: $logs/kube.log)"
"$here/build-kube.sh" "$INBOX_TOOLS_DIR/bin" >"$logs/kube.log" 2>&1 &
kube_pid=$!
say "helm $HELM_VERSION (log: $logs/helm.log)"
"$here/build-helm.sh" "$HELM_VERSION" "$INBOX_TOOLS_DIR/bin/helm" >"$logs/helm.log" 2>&1 &
helm_pid=$!

say "jaeger $JAEGER_VERSION (log: $logs/jaeger.log)"
"$here/build-jaeger.sh" "$JAEGER_VERSION" "$INBOX_TOOLS_DIR/bin/jaeger" >"$logs/jaeger.log" 2>&1 &
jaeger_pid=$!
say "Kafka $KAFKA_VERSION jars from Maven Central (log: $logs/kafka.log)"
"$here/build-kafka.sh" "$KAFKA_VERSION" "$INBOX_TOOLS_DIR/kafka-$KAFKA_VERSION" >"$logs/kafka.log" 2>&1 &
kafka_pid=$!

if ! command -v uv >/dev/null || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  say "installing uv $UV_VERSION from PyPI"
  python3 -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
say "Python environment from uv.lock (.venv)"
uv sync --frozen --quiet

fail=0
if ! wait "$daprd_pid"; then say "daprd build FAILED:"; tail -20 "$logs/daprd.log"; fail=1; fi
say "$(tail -1 "$logs/daprd.log")"
if ! wait "$kube_pid"; then say "kube build FAILED:"; tail -20 "$logs/kube.log"; fail=1; fi
say "$(tail -1 "$logs/kube.log")"
if ! wait "$helm_pid"; then say "helm build FAILED:"; tail -20 "$logs/helm.log"; fail=1; fi
say "$(tail -1 "$logs/helm.log")"
if ! wait "$jaeger_pid"; then say "jaeger build FAILED:"; tail -20 "$logs/jaeger.log"; fail=1; fi
say "$(tail -1 "$logs/jaeger.log")"
if ! wait "$kafka_pid"; then say "Kafka install FAILED:"; tail -20 "$logs/kafka.log"; fail=1; fi
say "$(tail -1 "$logs/kafka.log")"
if [ -n "$apt_pid" ] && ! wait "$apt_pid"; then say "apt-get FAILED:"; tail -20 "$logs/apt.log"; fail=1; fi
[ "$fail" -eq 0 ] || exit 1
say "done: daprd $("$INBOX_TOOLS_DIR/bin/daprd" --version), $(redis-server --version | cut -d' ' -f3), PostgreSQL $(ls /usr/lib/postgresql | sort -n | tail -1), $(chromium --version 2>/dev/null | head -1)"
