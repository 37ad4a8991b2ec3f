"""A real Kubernetes API server (and etcd) on loopback, without nodes.

Every object is admitted or rejected by the real kube-apiserver: schema, CEL rules, RBAC and
defaults. With no kubelet, pods never start; with kube-controller-manager's garbage-collector
and PVC-protection controllers running, owned objects are deleted with their owner as on a
cluster.
"""

import secrets
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.procs import CACHE_DIR, Process, free_port

BIN = CACHE_DIR / "bin"
OPERATOR_USER = "system:serviceaccount:support-inbox-system:support-inbox-operator"
"""The operator's identity: the ServiceAccount its RBAC manifest binds, via a static token."""


class KubeAPI:
    """etcd, kube-apiserver and the garbage collector; admin and operator kubeconfigs."""

    def __init__(self, log_dir: Path, with_gc: bool = True) -> None:
        self.log_dir = log_dir
        self.dir = Path(tempfile.mkdtemp(prefix="inbox-kube-"))
        self.port = free_port()
        self.etcd_port = free_port()
        self.admin_token = secrets.token_urlsafe(24)
        self.operator_token = secrets.token_urlsafe(24)
        self.with_gc = with_gc
        self.processes: list[Process] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> "KubeAPI":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        peer = free_port()
        etcd = Process(
            "etcd",
            [
                str(BIN / "etcd"),
                "--name",
                "default",
                "--data-dir",
                str(self.dir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            self.log_dir / "etcd.log",
        ).start()
        self.processes.append(etcd)
        etcd.wait_until(lambda: _get(f"http://127.0.0.1:{self.etcd_port}/health"), 30, "health")

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.dir / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        (self.dir / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (self.dir / "tokens.csv").write_text(
            f'{self.admin_token},admin,admin,"system:masters"\n'
            f"{self.operator_token},{OPERATOR_USER},operator,"
            '"system:serviceaccounts,system:serviceaccounts:support-inbox-system"\n'
        )
        certs = self.dir / "certs"
        apiserver = Process(
            "kube-apiserver",
            [
                str(BIN / "kube-apiserver"),
                "--etcd-servers",
                f"http://127.0.0.1:{self.etcd_port}",
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.port),
                "--cert-dir",
                str(certs),
                "--token-auth-file",
                str(self.dir / "tokens.csv"),
                "--authorization-mode",
                "RBAC",
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(self.dir / "sa.pub"),
                "--service-account-signing-key-file",
                str(self.dir / "sa.key"),
                "--service-cluster-ip-range",
                "10.96.0.0/16",
                "--disable-admission-plugins",
                "ServiceAccount",
                "--enable-priority-and-fairness=false",
                # no nodes and a loopback address: the kubernetes Service endpoint is not kept
                "--endpoint-reconciler-type",
                "none",
            ],
            self.log_dir / "kube-apiserver.log",
        ).start()
        self.processes.append(apiserver)
        apiserver.wait_until(lambda: (certs / "apiserver.crt").exists(), 60, "serving cert")
        self.ca = certs / "apiserver.crt"
        apiserver.wait_until(lambda: self._readyz(), 120, "readyz", peers=(etcd,))
        self.admin_kubeconfig = self._kubeconfig("admin", self.admin_token)
        self.operator_kubeconfig = self._kubeconfig("operator", self.operator_token)
        if self.with_gc:
            gc = Process(
                "kube-controller-manager",
                [
                    str(BIN / "kube-controller-manager"),
                    "--kubeconfig",
                    str(self.admin_kubeconfig),
                    "--authentication-kubeconfig",
                    str(self.admin_kubeconfig),
                    "--authorization-kubeconfig",
                    str(self.admin_kubeconfig),
                    "--controllers",
                    # owned objects follow their owner; a deleted PVC loses its finalizer
                    "garbage-collector-controller,persistentvolumeclaim-protection-controller",
                    "--leader-elect=false",
                    "--bind-address",
                    "127.0.0.1",
                    "--secure-port",
                    str(free_port()),
                    "--concurrent-gc-syncs",
                    "5",
                ],
                self.log_dir / "kube-controller-manager.log",
            ).start()
            self.processes.append(gc)

    def _readyz(self) -> bool:
        return _get(f"{self.url}/readyz", self.admin_token, self.ca)

    def _kubeconfig(self, user: str, token: str) -> Path:
        path = self.dir / f"{user}.kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": user,
                    "clusters": [
                        {
                            "name": "local",
                            "cluster": {"server": self.url, "certificate-authority": str(self.ca)},
                        }
                    ],
                    "users": [{"name": user, "user": {"token": token}}],
                    "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
                }
            )
        )
        return path

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


def _get(url: str, token: str | None = None, ca: Path | None = None) -> bool:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        time.sleep(0.2)
        return False
