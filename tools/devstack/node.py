"""A real single-node Kubernetes cluster on this machine, where kind cannot run.

kind and minikube's docker driver need privileged containers; this machine's capability
bounding set lacks CAP_SYS_RESOURCE, so they fail. Instead the node runs on the host, as
kubernetes' ``hack/local-up-cluster.sh`` does: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet and kube-proxy built by ``make tools``, Debian's containerd and runc as
the container runtime, Debian's CNI plugins (bridge, host-local, portmap, loopback) for pod
networking, then CoreDNS, the local-path provisioner and Dapr's control plane as pods.

Addresses: the node IP ``NODE_IP`` (a /32 on a bridge link of its own, since the ``dummy``
link type is unavailable), pods in ``POD_CIDR`` on the bridge ``POD_BRIDGE``, Services in
``SERVICE_CIDR``, cluster DNS at ``DNS_IP``. NodePorts answer on the node IP only, never on
loopback, so they cannot shadow the loopback ports the other tests use.

Everything the node changes on the host is undone by :meth:`LocalNode.down`: processes,
mounts, network namespaces, links, iptables chains, cgroups and the two sysctls it sets.

CLI: ``python -m devstack.node up|down|status`` (``make cluster CLUSTER=local``).
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from devstack.pki import make_pki
from devstack.procs import CACHE_DIR

BIN = CACHE_DIR / "bin"
REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("INBOX_CLUSTER_DIR", CACHE_DIR / "cluster"))
"""Run-time state of the node (wiped by ``down``); the image store beside it is kept."""
NODE_NAME = "inbox-node"
NODE_IP = "10.201.0.1"
NODE_LINK = "inbox-node0"
POD_CIDR = "10.244.0.0/24"
POD_BRIDGE = "inbox-cni0"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
API_PORT = 6443
ETCD_PORT = 12379
ETCD_PEER_PORT = 12380
DAPR_VERSION = os.environ.get("DAPR_VERSION", "v1.18.2")
PAUSE_IMAGE = "localhost/support-inbox/pause:3.10"
SYSCTLS = {
    "net/ipv4/ip_forward": "1",  # pods reach Services and each other through the host
    "net/bridge/bridge-nf-call-iptables": "1",  # Service NAT for pods on the same bridge
}
SERVICE_GUARD_CHAIN = "INBOX-SERVICES"
"""Refuses what is still addressed to a Service IP after kube-proxy's NAT (see
:meth:`LocalNode._guard_services`)."""
_CHAIN_PREFIXES = ("KUBE-", "CNI-", "INBOX-")

Progress = Callable[[str], None]


def _run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


class NodeError(RuntimeError):
    """The node could not start; the message names the step and ends with the log lines."""


class LocalNode:
    """One node: control plane, runtime, kubelet and kube-proxy as host processes."""

    def __init__(self, state_dir: Path = STATE_DIR, log_dir: Path | None = None) -> None:
        self.dir = state_dir
        self.log_dir = log_dir or state_dir.parent / "cluster-logs"
        self.pki = self.dir / "pki"
        self.kubeconfig = self.dir / "admin.kubeconfig"
        self.containerd_root = state_dir.parent / "cluster-images"
        """containerd's root: the imported images, kept across ``down``/``up``."""
        self.containerd_socket = self.dir / "containerd" / "containerd.sock"
        self._started = time.monotonic()

    # ---------------------------------------------------------------- helpers

    def _say(self, progress: Progress, text: str) -> None:
        progress(f"[cluster {time.monotonic() - self._started:4.0f}s] {text}")

    def _pids(self) -> dict[str, int]:
        try:
            return json.loads((self.dir / "pids.json").read_text())
        except (OSError, ValueError):
            return {}

    def _start(self, name: str, argv: list[str], env: dict | None = None) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                close_fds=True,
            )
        pids = self._pids()
        pids[name] = popen.pid
        (self.dir / "pids.json").write_text(json.dumps(pids))
        return popen.pid

    def _alive(self, name: str) -> bool:
        pid = self._pids().get(name)
        if not pid:
            return False
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def _log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait(self, what: str, ready: Callable[[], bool], timeout_s: float, *names: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name in names:
                if not self._alive(name):
                    raise NodeError(
                        f"{name} exited while waiting for {what} "
                        f"(log {self.log_dir / name}.log):\n{self._log_tail(name)}"
                    )
            if ready():
                return
            time.sleep(0.5)
        tails = "\n".join(f"--- {n}\n{self._log_tail(n)}" for n in names)
        raise NodeError(f"no {what} after {timeout_s:g} s\n{tails}")

    def kubectl(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run the built kubectl against this node as cluster admin."""
        return _run(str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args,
                    check=check, **kwargs)

    def _api_ok(self, path: str = "/readyz") -> bool:
        token = (self.dir / "tokens" / "admin").read_text().strip()
        request = urllib.request.Request(
            f"https://{NODE_IP}:{API_PORT}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        try:
            with urllib.request.urlopen(request, timeout=3, context=context) as response:
                return response.status == 200
        except OSError:
            return False

    # ---------------------------------------------------------------- up

    def up(self, progress: Progress = print, load_images: bool = True) -> None:
        """Start the node and its add-ons; return once the node is Ready and CoreDNS, the
        storage provisioner and Dapr's control plane are available.

        Raises:
            NodeError: a binary is missing, a process exited, or a step passed its bound;
                the message names the step and ends with the last log lines. Whatever was
                started is stopped again before it is raised.
        """
        self._started = time.monotonic()
        missing = [
            b
            for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                      "kubelet", "kube-proxy", "kubectl", "helm")
            if not (BIN / b).exists()
        ]
        missing += [t for t in ("containerd", "runc", "iptables", "ip") if not shutil.which(t)]
        if not Path("/usr/lib/cni/bridge").exists():
            missing.append("/usr/lib/cni/bridge (Debian package containernetworking-plugins)")
        if missing:
            raise NodeError(f"missing: {', '.join(missing)}: run `make tools`")
        if os.geteuid() != 0:
            raise NodeError("the local node runs kubelet and containerd, which need root")
        if (self.dir / "pids.json").exists():
            self._say(progress, "a previous node is still recorded: stopping it first")
            self.down(progress)
        try:
            self._up(progress, load_images)
        except BaseException:
            self._say(progress, "start-up failed: stopping what was started")
            self.down(progress)
            raise

    def _up(self, progress: Progress, load_images: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._snapshot_host()
        self._say(progress, f"network: {NODE_LINK} {NODE_IP}/32, sysctls")
        self._network_up()
        self._write_config()

        self._say(progress, "etcd and kube-apiserver")
        self._start_control_plane()
        self._wait("API server /readyz", self._api_ok, 120, "etcd", "kube-apiserver")
        self._start_controllers()

        self._say(progress, "containerd")
        self._start(
            "containerd", ["containerd", "--config", str(self.dir / "containerd.toml")]
        )
        self._wait("containerd socket", self.containerd_socket.exists, 60, "containerd")
        if load_images:
            self._say(progress, "loading images into containerd")
            self._load_images(progress)

        self._say(progress, "kubelet and kube-proxy")
        self._start_node()
        self._wait("node Ready", self._node_ready, 180, "kubelet", "kube-proxy", "containerd")

        self._say(progress, "add-ons: CoreDNS, local-path provisioner")
        self.kubectl("apply", "--server-side", "-f", str(REPO / "k8s/local/coredns.yaml"))
        manifest = (REPO / "k8s/local/local-path-provisioner.yaml").read_text()
        self.kubectl("apply", "--server-side", "-f", "-",
                     input=manifest.replace("__VOLUME_DIR__", str(self.dir / "volumes")))
        self._say(progress, f"Dapr {DAPR_VERSION} control plane from Dapr's own Helm chart")
        self.install_dapr()
        for ns, deployment in (("kube-system", "coredns"),
                               ("local-path-storage", "local-path-provisioner")):
            self.kubectl("-n", ns, "rollout", "status", f"deployment/{deployment}",
                         "--timeout=180s")
        self._say(progress, f"ready: node {NODE_NAME} at {NODE_IP}; KUBECONFIG={self.kubeconfig}")

    def install_dapr(self) -> None:
        """``helm install`` Dapr's chart from the pinned dapr module source (what ``dapr init
        -k`` installs), with the images built here (``k8s/local/dapr-values.yaml``)."""
        chart = CACHE_DIR / "src" / f"dapr-{DAPR_VERSION}" / "charts" / "dapr"
        if not chart.is_dir():
            raise NodeError(f"{chart} missing: run `make tools` (it unpacks the dapr module)")
        done = _run(
            str(BIN / "helm"), "upgrade", "--install", "dapr", str(chart),
            "--kubeconfig", str(self.kubeconfig),
            "-n", "dapr-system", "--create-namespace",
            "-f", str(REPO / "k8s/local/dapr-values.yaml"),
            "--set", f"global.tag={DAPR_VERSION.lstrip('v')}",
            "--wait", "--timeout", "5m", check=False,
        )
        if done.returncode != 0:
            pods = self.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
            raise NodeError(f"helm install dapr failed:\n{done.stdout}{done.stderr}\n{pods}")

    def _snapshot_host(self) -> None:
        sysctls = {k: Path(f"/proc/sys/{k}").read_text().strip() for k in SYSCTLS}
        netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
        (self.dir / "host.json").write_text(json.dumps({"sysctls": sysctls, "netns": netns}))

    def _network_up(self) -> None:
        for key, value in SYSCTLS.items():
            Path(f"/proc/sys/{key}").write_text(value)
        if _run("ip", "link", "show", NODE_LINK, check=False).returncode != 0:
            _run("ip", "link", "add", NODE_LINK, "type", "bridge")
        _run("ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_LINK)
        _run("ip", "link", "set", NODE_LINK, "up")
        self._guard_services()

    def _guard_services(self) -> None:
        """Refuse a connection to a Service IP that kube-proxy has not translated (yet).

        Service IPs exist only as kube-proxy's NAT rules. A pod that connects to one before
        kube-proxy wrote its rule (a Deployment started with the Service it calls) sends the
        packet out of the host's default route instead. Here that route ends at an egress
        gateway that answers any TCP connection with HTTP 404, and a gRPC client keeps such a
        connection: the OpenTelemetry collector then dropped every span it exported to Jaeger
        for the whole run. Refused instead, the client retries and reaches the Service once
        its rule exists, as in a cluster whose Service range no router knows. The filter
        table sees packets after NAT, so translated ones never match.
        """
        _run("iptables", "-N", SERVICE_GUARD_CHAIN, check=False)
        _run("iptables", "-F", SERVICE_GUARD_CHAIN)
        _run("iptables", "-A", SERVICE_GUARD_CHAIN, "-d", SERVICE_CIDR, "-p", "tcp",
             "-j", "REJECT", "--reject-with", "tcp-reset")
        _run("iptables", "-A", SERVICE_GUARD_CHAIN, "-d", SERVICE_CIDR,
             "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
        for hook in ("FORWARD", "OUTPUT"):
            if _run("iptables", "-C", hook, "-j", SERVICE_GUARD_CHAIN, check=False).returncode:
                _run("iptables", "-A", hook, "-j", SERVICE_GUARD_CHAIN)

    def _write_config(self) -> None:
        make_pki(self.pki, NODE_IP, API_SERVICE_IP)
        tokens = self.dir / "tokens"
        tokens.mkdir(exist_ok=True)
        users = {
            "admin": ("admin", "system:masters"),
            "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", ""),
            "kube-scheduler": ("system:kube-scheduler", ""),
            "kube-controller-manager": ("system:kube-controller-manager", ""),
        }
        lines = []
        for name, (user, group) in users.items():
            token = os.urandom(24).hex()
            (tokens / name).write_text(token)
            lines.append(f'{token},{user},{user},"{group}"' if group else f"{token},{user},{user}")
            self._kubeconfig(self.dir / f"{name}.kubeconfig", token)
        (self.dir / "tokens.csv").write_text("\n".join(lines) + "\n")
        (self.dir / "tokens.csv").chmod(0o600)

        cni = self.dir / "cni" / "net.d"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-inbox.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": "inbox",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": POD_BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2))
        state = self.dir / "containerd"
        (self.dir / "containerd.toml").write_text(f"""version = 2
root = "{self.containerd_root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{state}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{state}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine's bounding set lacks
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
""")
        (self.dir / "kubelet.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # kubelet >= 1.35 refuses cgroup v1 otherwise
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_IP,
            "healthzBindAddress": "127.0.0.1",
            "readOnlyPort": 0,
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            # a shared development disk: evict only when it is really full
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%",
                             "imagefs.available": "2%"},
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "serializeImagePulls": False,
            "maxPods": 60,
            "podLogsDir": str(self.dir / "pod-logs"),  # not /var/log/pods: down removes it
        }))
        (self.dir / "kube-proxy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.dir / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # leave the host's conntrack sysctls as they are
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
        }))

    def _kubeconfig(self, path: Path, token: str) -> None:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "local",
            "clusters": [{"name": "local", "cluster": {
                "server": f"https://{NODE_IP}:{API_PORT}",
                "certificate-authority": str(self.pki / "ca.crt"),
            }}],
            "users": [{"name": "local", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
        }))
        path.chmod(0o600)

    def _start_control_plane(self) -> None:
        etcd = f"http://127.0.0.1:{ETCD_PORT}"
        peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        self._start("etcd", [
            str(BIN / "etcd"), "--name", "default", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", etcd, "--advertise-client-urls", etcd,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--listen-metrics-urls", "",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        pki = self.pki
        self._start("kube-apiserver", [
            str(BIN / "kube-apiserver"),
            "--etcd-servers", etcd,
            "--bind-address", NODE_IP,
            "--advertise-address", NODE_IP,
            "--secure-port", str(API_PORT),
            "--tls-cert-file", str(pki / "apiserver.crt"),
            "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"),
            "--kubelet-client-certificate", str(pki / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key", str(pki / "apiserver-kubelet-client.key"),
            "--token-auth-file", str(self.dir / "tokens.csv"),
            "--authorization-mode", "Node,RBAC",
            "--enable-admission-plugins", "NodeRestriction",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--allow-privileged=false",
            # the node's name resolves nowhere; logs and exec go to its InternalIP
            "--kubelet-preferred-address-types", "InternalIP",
            "--profiling=false",
        ])

    def _start_controllers(self) -> None:
        self._start("kube-controller-manager", [
            str(BIN / "kube-controller-manager"),
            "--kubeconfig", str(self.dir / "kube-controller-manager.kubeconfig"),
            "--authentication-kubeconfig", str(self.dir / "kube-controller-manager.kubeconfig"),
            "--authorization-kubeconfig", str(self.dir / "kube-controller-manager.kubeconfig"),
            "--service-account-private-key-file", str(self.pki / "sa.key"),
            "--root-ca-file", str(self.pki / "ca.crt"),
            "--use-service-account-credentials",
            "--leader-elect=false",
            "--bind-address", "127.0.0.1",
            "--cluster-name", "support-inbox-local",
            "--profiling=false",
        ])
        self._start("kube-scheduler", [
            str(BIN / "kube-scheduler"),
            "--kubeconfig", str(self.dir / "kube-scheduler.kubeconfig"),
            "--authentication-kubeconfig", str(self.dir / "kube-scheduler.kubeconfig"),
            "--authorization-kubeconfig", str(self.dir / "kube-scheduler.kubeconfig"),
            "--leader-elect=false",
            "--bind-address", "127.0.0.1",
            "--profiling=false",
        ])

    def _start_node(self) -> None:
        self._start("kubelet", [
            str(BIN / "kubelet"),
            "--config", str(self.dir / "kubelet.yaml"),
            "--kubeconfig", str(self.dir / "kubelet.kubeconfig"),
            "--hostname-override", NODE_NAME,
            "--node-ip", NODE_IP,
            "--root-dir", str(self.dir / "kubelet"),
            "--cert-dir", str(self.dir / "kubelet" / "pki"),
        ])
        self._start("kube-proxy", [
            str(BIN / "kube-proxy"), "--config", str(self.dir / "kube-proxy.yaml"),
        ])

    def _node_ready(self) -> bool:
        done = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if done.returncode != 0:
            return False
        conditions = json.loads(done.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _load_images(self, progress: Progress) -> None:
        # the images are built by the caller first (make cluster, the test fixture)
        done = subprocess.run(
            [str(REPO / "tools/load-images.sh"), str(self.containerd_socket)],
            capture_output=True, text=True, check=False,
        )
        for line in done.stdout.splitlines():
            self._say(progress, f"  {line}")
        if done.returncode != 0:
            raise NodeError(f"loading images failed:\n{done.stdout}{done.stderr}")

    # ---------------------------------------------------------------- down

    def down(self, progress: Progress = print) -> None:
        """Stop the node and undo everything it changed on the host; safe to call twice,
        and after a failed or interrupted ``up``."""
        if not self.dir.exists():
            return
        pids = self._pids()
        if pids.get("kube-apiserver") and self._alive("kube-apiserver") and \
                self._alive("kubelet"):
            self._say(progress, "deleting every pod (the kubelet tears down their sandboxes)")
            for name in ("kube-controller-manager", "kube-scheduler"):
                self._stop(name)
            self.kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=5",
                         "--wait=false", check=False, timeout=60)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                left = self.kubectl("get", "pods", "-A", "-o", "name", check=False, timeout=30)
                if left.returncode != 0 or not left.stdout.strip():
                    break
                time.sleep(1)
        self._say(progress, "stopping kubelet, kube-proxy, containerd and the control plane")
        for name in ("kube-controller-manager", "kube-scheduler", "kubelet"):
            self._stop(name)
        self._stop("kube-proxy")
        if (BIN / "kube-proxy").exists():
            _run(str(BIN / "kube-proxy"), "--cleanup", check=False)
        self._stop("containerd")
        self._kill_shims()
        self._unmount()
        for name in ("kube-apiserver", "etcd"):
            self._stop(name)
        self._network_down()
        self._remove_cgroups()
        shutil.rmtree(self.dir, ignore_errors=True)
        self._say(progress, "stopped; the host is as before")

    def _stop(self, name: str, grace_s: float = 15) -> None:
        pid = self._pids().get(name)
        if not pid or not self._alive(name):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self._alive(name):
            time.sleep(0.2)
        if self._alive(name):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.5)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design; any left for our socket goes too."""
        marker = str(self.containerd_socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _unmount(self) -> None:
        roots = (str(self.dir), str(self.containerd_root), "/run/netns/cni-")
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
        host = self._host_state()
        for point in sorted(points, key=len, reverse=True):
            point = point.replace("\\040", " ")
            if point.startswith(roots) and Path(point).name not in host.get("netns", []):
                _run("umount", "-l", point, check=False)
        if os.path.isdir("/run/netns"):
            for name in os.listdir("/run/netns"):
                if name.startswith("cni-") and name not in host.get("netns", []):
                    Path("/run/netns", name).unlink(missing_ok=True)

    def _host_state(self) -> dict:
        try:
            return json.loads((self.dir / "host.json").read_text())
        except (OSError, ValueError):
            return {}

    def _network_down(self) -> None:
        for link in (POD_BRIDGE, NODE_LINK):
            _run("ip", "link", "delete", link, check=False)
        for name in os.listdir("/sys/class/net"):
            if name.startswith("veth") and POD_BRIDGE in _run(
                "ip", "-o", "link", "show", name, check=False
            ).stdout:
                _run("ip", "link", "delete", name, check=False)
        remove_chains(_CHAIN_PREFIXES)
        for key, value in self._host_state().get("sysctls", {}).items():
            Path(f"/proc/sys/{key}").write_text(value)

    def _remove_cgroups(self) -> None:
        for controller in Path("/sys/fs/cgroup").iterdir():
            top = controller / "kubepods"
            if not top.is_dir():
                continue
            for directory in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                reverse=True,
            ):
                try:
                    directory.rmdir()
                except OSError:
                    pass
            try:
                top.rmdir()
            except OSError:
                pass

    def status(self) -> str:
        lines = [f"{name}: {'running' if self._alive(name) else 'stopped'} (pid {pid})"
                 for name, pid in self._pids().items()]
        return "\n".join(lines) or "no local node"


def remove_chains(prefixes: tuple[str, ...]) -> None:
    """Delete every iptables chain whose name starts with one of ``prefixes``, and every
    rule that jumps to one, in each table; other rules are left as they were."""
    for table in ("nat", "filter", "mangle"):
        saved = _run("iptables-save", "-t", table, check=False).stdout
        if not any(p in saved for p in prefixes):
            continue
        for line in saved.splitlines():
            if line.startswith("-A ") and any(f"-j {p}" in line for p in prefixes) and \
                    not line.split()[1].startswith(prefixes):
                _run("iptables", "-t", table, "-D", *shlex.split(line)[1:], check=False)
        chains = [line[1:].split()[0] for line in saved.splitlines()
                  if line.startswith(":") and line[1:].startswith(prefixes)]
        for chain in chains:
            _run("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            _run("iptables", "-t", table, "-X", chain, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--no-images", action="store_true",
                        help="up: do not load the images into containerd")
    args = parser.parse_args()
    node = LocalNode()
    try:
        if args.action == "up":
            node.up(load_images=not args.no_images)
            print(f"export KUBECONFIG={node.kubeconfig}")
        elif args.action == "down":
            node.down()
        else:
            print(node.status())
    except NodeError as error:
        print(f"make cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
