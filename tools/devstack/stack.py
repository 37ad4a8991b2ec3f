"""The whole Support Inbox on one machine: infra, three services, three daprd sidecars."""

import json
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher

from devstack.infra import Postgres, Redis
from devstack.procs import CACHE_DIR, Process, StartError, free_port, http_ok

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "dapr-components" / "local"
DAPRD = CACHE_DIR / "bin" / "daprd"
SERVICES = {
    # app-id: (uvicorn factory, daprd --app-max-concurrency)
    "gateway": ("gateway.main:create_app", 100),
    "messaging": ("messaging.main:create_app", 20),
    "ai-worker": ("ai_worker.main:create_app", 4),
}


@dataclass
class Ports:
    app: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    grpc: int = field(default_factory=free_port)
    internal: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)


@dataclass
class Service:
    name: str
    ports: Ports
    app: Process
    sidecar: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.app}"


class Stack:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent; stops what started).

    Args:
        run_dir: logs and data go here.
        ollama_url: the Ollama server the ai-worker uses.
        ollama_model: the model it asks for.
        env: extra environment for every service (e.g. ``OLLAMA_TIMEOUT_S``).
        services: which of :data:`SERVICES` to run (integration tests run one alone).
        gateway_port: the gateway's port (a free one when ``None``).
        pg_dir: PostgreSQL's directory (wiped at start); a new temporary one when ``None``.
            The ``postgres`` user must be able to reach it when running as root.
    """

    def __init__(
        self,
        run_dir: Path,
        ollama_url: str,
        ollama_model: str,
        env: dict[str, str] | None = None,
        pg_dir: Path | None = None,
        gateway_port: int | None = None,
        services: tuple[str, ...] = tuple(SERVICES),
    ) -> None:
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.ollama_url = ollama_url
        self.ollama_model = ollama_model
        self.extra_env = env or {}
        self.postgres = Postgres(self.log_dir, data_dir=pg_dir)
        self.redis = Redis(self.log_dir)
        self.jwt_secret = "dev-" + secrets.token_urlsafe(32)
        self.channel_key = "dev-channel-" + secrets.token_urlsafe(16)
        self.dapr_api_token = secrets.token_urlsafe(24)
        self.app_api_token = secrets.token_urlsafe(24)
        self.operator = ("demo", "demo-password")
        user, password = self.operator
        self._operators_json = json.dumps(  # hashed once; argon2 is slow on purpose
            {
                user: {
                    "password_hash": PasswordHasher().hash(password),
                    "display_name": "Demo Operator",
                }
            }
        )
        self.services: dict[str, Service] = {}
        self._gateway_port = gateway_port
        self._names = services
        self._started: list = []

    def start(self) -> "Stack":
        if not DAPRD.exists():
            raise StartError(f"{DAPRD} is missing: run `make tools`")
        try:
            self._started.append(self.postgres.start())
            self._started.append(self.redis.start())
            self._migrate()
            for name in self._names:
                self.start_service(name)
            for name in self._names:
                self._wait_or_restart(name)
        except BaseException:
            self.stop()
            raise
        return self

    def _service_env(self, name: str, ports: Ports) -> dict[str, str]:
        return {
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": self.postgres.url,
            "OLLAMA_URL": self.ollama_url,
            "OLLAMA_MODEL": self.ollama_model,
            "JWT_SECRET": self.jwt_secret,
            "OPERATORS": self._operators_json,
            "CHANNEL_API_KEYS": json.dumps([self.channel_key]),
            "DAPR_HTTP_PORT": str(ports.http),
            "DAPR_GRPC_PORT": str(ports.grpc),
            "DAPR_API_TOKEN": self.dapr_api_token,
            "APP_API_TOKEN": self.app_api_token,
            "INBOX_REDIS_HOST": self.redis.host,
            "INBOX_REDIS_PASSWORD": self.redis.password,
            "OTEL_SERVICE_NAME": name,
            **self.extra_env,
        }

    def _migrate(self) -> None:
        migrate = Process(
            "messaging-prestart",
            [sys.executable, "-m", "messaging.prestart"],
            self.log_dir / "messaging-prestart.log",
            env=self._service_env("messaging", Ports()),
        )
        migrate.start()
        if migrate.popen.wait(120) != 0:  # type: ignore[union-attr]
            raise StartError(f"migrations failed:\n{migrate.log_tail()}")

    def start_service(self, name: str) -> Service:
        """Start (or restart) one service and its sidecar on fresh ports."""
        factory, max_concurrency = SERVICES[name]
        ports = Ports()
        if name == "gateway" and self._gateway_port:
            ports.app = self._gateway_port
        env = self._service_env(name, ports)
        app = Process(
            name,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.app),
                "--no-access-log",
                "--ws-max-size",
                "65536",
            ],
            self.log_dir / f"{name}.log",
            env=env,
        ).start()
        sidecar = Process(
            f"{name}-daprd",
            [
                str(DAPRD),
                "--app-id",
                name,
                "--app-port",
                str(ports.app),
                "--app-protocol",
                "http",
                "--dapr-http-port",
                str(ports.http),
                "--dapr-grpc-port",
                str(ports.grpc),
                "--dapr-internal-grpc-port",
                str(ports.internal),
                "--metrics-port",
                str(ports.metrics),
                "--dapr-listen-addresses",
                "127.0.0.1",
                "--resources-path",
                str(COMPONENTS),
                "--config",
                str(COMPONENTS / "config.yaml"),
                "--app-max-concurrency",
                str(max_concurrency),
                "--placement-host-address",
                "",
                "--scheduler-host-address",
                "",
                "--log-level",
                "info",
                "--dapr-graceful-shutdown-seconds",
                "3",
            ],
            self.log_dir / f"{name}-daprd.log",
            env=env,
        ).start()
        service = Service(name, ports, app, sidecar)
        self.services[name] = service
        return service

    def _wait_or_restart(self, name: str, attempts: int = 3) -> None:
        """Wait for ``name``; if a port it was given got taken meanwhile, retry on new ports."""
        for attempt in range(1, attempts + 1):
            try:
                self.wait_ready(name)
                return
            except StartError as exc:
                if "address already in use" not in str(exc) or attempt == attempts:
                    raise
                self.stop_service(name)
                self.start_service(name)

    def wait_ready(self, name: str, timeout_s: float = 90) -> None:
        """Wait until the sidecar reports healthy (app connected, subscriptions loaded)."""
        service = self.services[name]
        healthz = f"http://127.0.0.1:{service.ports.http}/v1.0/healthz"
        service.sidecar.wait_until(
            lambda: http_ok(healthz), timeout_s, "healthy sidecar", peers=(service.app,)
        )
        service.app.wait_until(lambda: http_ok(f"{service.url}/healthz"), timeout_s, "healthy app")

    def stop_service(self, name: str) -> None:
        service = self.services[name]
        service.sidecar.stop()
        service.app.stop()

    def stop(self) -> None:
        # Sidecars and apps shut down gracefully in parallel, then the infrastructure they use.
        with ThreadPoolExecutor(max_workers=max(1, len(self.services))) as pool:
            list(pool.map(self.stop_service, list(self.services)))
        for infra in reversed(self._started):
            infra.stop()
        self._started.clear()

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url
