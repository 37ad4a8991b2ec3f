#!/usr/bin/env bash
# A Docker engine for `make images`: start | stop | status.
#
# start: when an engine already answers (`docker info`: Docker Desktop, a system service,
#   DOCKER_HOST), use it and change nothing. Otherwise start the machine's own `dockerd` (Debian's
#   docker.io) in the background, with its own containerd, and wait until it answers.
#   Its data root is $INBOX_TOOLS_DIR/docker, so built layers survive between runs; pid files are in
#   $INBOX_TOOLS_DIR/run/docker, logs in $INBOX_TOOLS_DIR/logs/{dockerd,docker-containerd}.log.
# stop: stops only an engine this script started (nothing otherwise), after any running
#   tools/build-images.sh has finished.
#
# The engine is started without a bridge, NAT or iptables rules (--bridge=none --iptables=false):
# no docker0, no DOCKER chains, no FORWARD policy change that could break a kubelet's CNI bridge
# on the same machine. Builds use `docker build --network host` (tools/build-images.sh), and a
# `docker run` needs `--network host` or `--network none`.
# Its containerd is its own (socket in the run dir), never a node's /run/containerd one, which
# dockerd would otherwise adopt when it exists.
set -euo pipefail
: "${INBOX_TOOLS_DIR:=$HOME/.cache/support-inbox}"
: "${DOCKER_ENGINE_TIMEOUT:=60}"
data=$INBOX_TOOLS_DIR/docker
run=$INBOX_TOOLS_DIR/run/docker
logs=$INBOX_TOOLS_DIR/logs
dockerd_pid=$run/dockerd.pid
containerd_pid=$run/containerd.pid
sock=/var/run/docker.sock

say() { echo "docker-engine: $*"; }
answers() { docker info >/dev/null 2>&1; }
# The pid in FILE, when that process is alive and is NAME.
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
}
# Wait up to $2 seconds for process $1 to exit.
wait_exit() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
stop_pid() { # FILE NAME TIMEOUT
  local pid
  pid=$(alive "$1" "$2") || { rm -f "$1"; return 0; }
  kill -TERM "$pid"
  if ! wait_exit "$pid" "$3"; then
    say "$2 ($pid) did not stop within $3s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 5 || true
  fi
  rm -f "$1"
}
ours() { alive "$dockerd_pid" dockerd >/dev/null; }

start() {
  if ours && answers; then say "running (started by this script, pid $(cat "$dockerd_pid"))"; return 0; fi
  if answers; then say "using the Docker engine that already answers ($(docker context show 2>/dev/null || echo default))"; return 0; fi
  for b in dockerd containerd runc; do
    command -v "$b" >/dev/null || { say "no Docker engine answers and $b is not installed (Debian: apt-get install docker.io)" >&2; exit 1; }
  done
  [ "$(id -u)" -eq 0 ] || { say "no Docker engine answers; starting dockerd needs root" >&2; exit 1; }
  # Leftovers of an engine of ours that died: its containerd, its socket.
  stop_pid "$containerd_pid" containerd 10
  rm -f "$dockerd_pid"
  [ -S "$sock" ] && ! answers && rm -f "$sock"
  mkdir -p "$data" "$run" "$logs"

  cat >"$run/containerd.toml" <<EOF
version = 2
root = "$data/containerd"
state = "$run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$run/containerd.sock"
[debug]
  level = "warn"
EOF
  say "starting containerd for dockerd (log: $logs/docker-containerd.log)"
  setsid containerd --config "$run/containerd.toml" </dev/null >>"$logs/docker-containerd.log" 2>&1 &
  echo $! >"$containerd_pid"
  local i
  for ((i = 0; i < DOCKER_ENGINE_TIMEOUT * 10; i++)); do
    [ -S "$run/containerd.sock" ] && break
    alive "$containerd_pid" containerd >/dev/null || { say "containerd exited:" >&2; tail -20 "$logs/docker-containerd.log" >&2; exit 1; }
    sleep 0.1
  done

  say "starting dockerd, data root $data (log: $logs/dockerd.log)"
  setsid dockerd --data-root "$data" --pidfile "$dockerd_pid" --host "unix://$sock" \
    --containerd "$run/containerd.sock" --storage-driver overlay2 \
    --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    </dev/null >>"$logs/dockerd.log" 2>&1 &
  local pid=$!   # dockerd writes its pid file itself (and refuses to start when one exists)
  for ((i = 0; i < DOCKER_ENGINE_TIMEOUT * 10; i++)); do
    if DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
      say "dockerd $(dockerd --version | cut -d' ' -f3 | tr -d ,) answers on $sock (pid $pid)"
      answers || say "note: plain 'docker info' does not reach it (DOCKER_HOST=$DOCKER_HOST?)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { say "dockerd exited:" >&2; tail -20 "$logs/dockerd.log" >&2; stop_pid "$containerd_pid" containerd 10; exit 1; }
    sleep 0.1
  done
  say "dockerd did not answer within ${DOCKER_ENGINE_TIMEOUT}s; stopping it (log: $logs/dockerd.log)" >&2
  echo "$pid" >"$dockerd_pid"; stop; exit 1
}

stop() {
  if ! ours && ! alive "$containerd_pid" containerd >/dev/null; then
    if answers; then say "the running engine was not started by this script: left alone"; else say "not running"; fi
    return 0
  fi
  # Not under a running tools/build-images.sh (it holds this lock while it uses the engine).
  if [ -z "${INBOX_BUILD_LOCK_HELD:-}" ]; then
    mkdir -p "$INBOX_TOOLS_DIR/images"
    exec 9>"$INBOX_TOOLS_DIR/images/.build.lock"
    flock -n 9 || { say "waiting for a running tools/build-images.sh to finish"; flock 9; }
  fi
  say "stopping dockerd"
  stop_pid "$dockerd_pid" dockerd 30
  stop_pid "$containerd_pid" containerd 15
  rm -f "$sock" "$run"/containerd.sock*
  # What a dockerd with default networking would have left; ours adds neither, but an older run
  # of ours (or someone's --bridge) may have.
  if ip link show docker0 >/dev/null 2>&1; then say "removing the docker0 bridge"; ip link delete docker0 || true; fi
  local t c
  for t in filter nat; do
    for c in DOCKER DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2; do
      iptables -t "$t" -n -L "$c" >/dev/null 2>&1 || continue
      say "removing iptables chain $t/$c"
      iptables-save -t "$t" | grep -E -- "-j $c( |$)" | sed 's/^-A/-D/' | while read -r rule; do
        eval "iptables -t $t $rule" || true
      done
      iptables -t "$t" -F "$c" || true
      iptables -t "$t" -X "$c" || true
    done
  done
  say "stopped"
}

status() {
  if ours; then
    say "running, started by this script (dockerd pid $(cat "$dockerd_pid"), data root $data)"
  elif answers; then
    say "an engine answers that this script did not start"
  else
    say "not running"; return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
