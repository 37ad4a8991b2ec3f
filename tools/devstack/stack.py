"""The whole Support Inbox on one machine: infra, three services, three daprd sidecars."""

import contextlib
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from argon2 import PasswordHasher

from devstack.brokers import NatsJetStream, RabbitMQ
from devstack.infra import Postgres, Redis
from devstack.kafka import Kafka
from devstack.procs import CACHE_DIR, Process, StartError, free_port, http_ok

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = REPO / "dapr-components"
SCOPE_KEYS = ("publishingScopes", "subscriptionScopes", "protectedTopics")
DAPRD = CACHE_DIR / "bin" / "daprd"
BROKERS = {
    "redis": Redis,
    "rabbitmq": RabbitMQ,
    "kafka": Kafka,
    "jetstream": NatsJetStream,
    "in-memory": None,
}
"""Pub/sub brokers (``dapr-components/pubsub/<name>/``) and the server class each needs. The
Redis server is shared with a Redis state store. ``in-memory`` needs no server, and delivers
only within one sidecar: one service alone, never the whole inbox."""
STATE_STORES = ("redis", "postgresql")
"""State stores (``dapr-components/state/<name>/``)."""
SERVICES = {
    # app-id: (uvicorn factory, daprd --app-max-concurrency)
    "gateway": ("gateway.main:create_app", 100),
    "messaging": ("messaging.main:create_app", 20),
    "ai-worker": ("ai_worker.main:create_app", 4),
}

EDGE_ARGS = (
    "--http",
    "gateway.edge:BoundedHttpToolsProtocol",
    "--ws",
    "gateway.edge:DenyingWebSocketProtocol",
)
"""The gateway's uvicorn protocols: bounded request heads, quiet WebSocket denials."""

_RUNNING: "list[Stack]" = []


def running_stacks() -> "list[Stack]":
    """The stacks started and not yet stopped in this process, oldest first."""
    return list(_RUNNING)


class MemberDied(StartError):
    """A process of a running stack exited without being asked to; the message names it, how
    it ended, and ends with the last lines of its log."""


@dataclass
class Ports:
    """One instance's loopback ports: ``app`` (uvicorn), ``app_metrics`` (the app's Prometheus
    metrics, ``METRICS_PORT``), and the sidecar's ``http``, ``grpc``, ``internal`` and
    ``metrics`` (daprd's own Prometheus metrics)."""

    app: int = field(default_factory=free_port)
    app_metrics: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    grpc: int = field(default_factory=free_port)
    internal: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)


@dataclass
class Service:
    name: str
    app_id: str
    ports: Ports
    app: Process
    sidecar: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.app}"

    @property
    def metrics_url(self) -> str:
        """The app's Prometheus metrics (``inbox_*``), on their own port."""
        return f"http://127.0.0.1:{self.ports.app_metrics}/metrics"

    @property
    def sidecar_metrics_url(self) -> str:
        """The daprd sidecar's Prometheus metrics (``dapr_*``)."""
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"


class Stack:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent; stops what started).
    While it runs, :meth:`check` raises when one of its processes died
    (:func:`running_stacks` lists the running ones).

    Args:
        run_dir: logs, data and the sidecars' component files go here.
        ollama_url: the Ollama server the ai-worker uses.
        ollama_model: the model it asks for.
        env: extra environment for every service (e.g. ``OLLAMA_TIMEOUT_S``).
        services: which of :data:`SERVICES` to run (integration tests run one alone).
        replicas: instances of each service, each with its own sidecar; instance names are
            the app-id, then ``<app-id>-2``, ``<app-id>-3``...
        broker: a key of :data:`BROKERS`.
        state_store: one of :data:`STATE_STORES`.
        component_overrides: component name -> metadata name -> value, applied to the copies
            of the component YAML (tests shorten redelivery timeouts this way).
        broker_options: keyword arguments for the broker's server class.
        otlp_endpoint: OTLP/HTTP base URL (``http://127.0.0.1:4318``) that the services and
            their sidecars export spans to; no export when ``None``.
        gateway_port: the first gateway's port (a free one when ``None``).
        pg_dir: PostgreSQL's directory (wiped at start); a new temporary one when ``None``.
            The ``postgres`` user must be able to reach it when running as root.
        progress: called with one line (seconds since :meth:`start`, then what is ready)
            as each server and instance becomes ready; ``make run`` prints them.
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
        replicas: int = 1,
        broker: str = "redis",
        state_store: str = "redis",
        component_overrides: dict[str, dict[str, str]] | None = None,
        broker_options: dict[str, object] | None = None,
        otlp_endpoint: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if broker not in BROKERS:
            raise StartError(f"unknown broker {broker!r}; choose one of {', '.join(BROKERS)}")
        if broker == "in-memory" and (len(services) > 1 or replicas > 1):
            raise StartError(
                "the in-memory broker delivers only within one sidecar, so it cannot carry "
                "events between services or replicas; use it with one service, or choose "
                "redis, rabbitmq, kafka or jetstream"
            )
        if state_store not in STATE_STORES:
            raise StartError(f"unknown state store {state_store!r}; choose one of {STATE_STORES}")
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.components_dir = run_dir / "components"
        self.ollama_url = ollama_url
        self.ollama_model = ollama_model
        self.extra_env = env or {}
        self.broker_name = broker
        self.state_store = state_store
        self.component_overrides = component_overrides or {}
        # A service run alone stands in for its absent peers (its probe publishes what they
        # would), so its sidecar gets the components without pub/sub scopes.
        self.scoped = set(services) == set(SERVICES)
        self.otlp_endpoint = otlp_endpoint
        self.postgres = Postgres(self.log_dir, data_dir=pg_dir)
        needs_redis = broker == "redis" or state_store == "redis"
        self.redis = Redis(self.log_dir) if needs_redis else None
        broker_class = BROKERS[broker]
        options = broker_options or {}
        if broker == "redis":
            self.broker = self.redis
        else:
            self.broker = broker_class(self.log_dir, **options) if broker_class else None
        self.jwt_secret = "dev-" + secrets.token_urlsafe(32)
        self.channel_key = "dev-channel-" + secrets.token_urlsafe(16)
        # the chat widget's demo channel: its site runs on a port of its own (another origin)
        self.widget_channel = "demo"
        self.widget_assistant_channel = "demo-ai"
        self.widget_no_ai_channel = "demo-off"
        self.widget_site_port = free_port()
        self.widget_site_origin = f"http://127.0.0.1:{self.widget_site_port}"
        self.widget_identity_secret = secrets.token_urlsafe(32)
        self.widget_assistant_site_port = free_port()
        self.widget_assistant_site_origin = f"http://127.0.0.1:{self.widget_assistant_site_port}"
        self.dapr_api_token = secrets.token_urlsafe(24)
        self.app_api_token = secrets.token_urlsafe(24)
        self.operator = ("demo", "demo-password")
        """An operator with the ``admin`` role."""
        self.agent = ("agent", "agent-password")
        """An operator with the ``agent`` role."""
        self._operators_json = json.dumps(  # hashed once; argon2 is slow on purpose
            {
                user: {
                    "password_hash": PasswordHasher().hash(password),
                    "display_name": name,
                    "role": role,
                }
                for (user, password), name, role in (
                    (self.operator, "Demo Operator", "admin"),
                    (self.agent, "Demo Agent", "agent"),
                )
            }
        )
        self.services: dict[str, Service] = {}
        self._gateway_port = gateway_port
        self._instances = [
            name if replica == 1 else f"{name}-{replica}"
            for name in services
            for replica in range(1, replicas + 1)
        ]
        self._started: list = []
        self._progress = progress
        self._began = time.monotonic()

    def _ready(self, what: str) -> None:
        if self._progress:
            self._progress(f"[{time.monotonic() - self._began:5.1f} s] {what}")

    def start(self) -> "Stack":
        if not DAPRD.exists():
            raise StartError(f"{DAPRD} is missing: run `make tools`")
        self._began = time.monotonic()
        try:
            infra = [self.postgres, self.redis, self.broker]
            for server in dict.fromkeys(s for s in infra if s is not None):
                self._started.append(server.start())
                self._ready(f"{type(server).__name__} ready")
            self._write_components()
            self._migrate()
            self._ready("database schema migrated")
            for name in self._instances:
                self.start_service(name)
            for name in self._instances:
                self._wait_or_restart(name)
                self._ready(f"{name} and its daprd ready")
            # An instance found ready may have died while the later ones were awaited (daprd
            # exits when a port it binds after its health check is taken meanwhile): wait for
            # it again, which restarts it after such a race and raises for anything else.
            for name in self._instances:
                if self.services[name].app.died or self.services[name].sidecar.died:
                    self._wait_or_restart(name)
            self.check()
        except BaseException:
            self.stop()
            raise
        _RUNNING.append(self)
        return self

    def members(self) -> list[Process]:
        """Every long-running process of the stack: its servers, then each instance's app and
        sidecar."""
        servers = dict.fromkeys(s for s in (self.postgres, self.redis, self.broker) if s)
        processes = [s.process for s in servers if s.process is not None]
        for service in self.services.values():
            processes += [service.app, service.sidecar]
        return processes

    def dead(self) -> list[Process]:
        """The members that exited without :meth:`stop` (or a test's ``kill``) asking them to."""
        return [process for process in self.members() if process.died]

    def check(self, log_lines: int = 20) -> None:
        """Raise :class:`MemberDied` when any member is :meth:`dead`.

        The message names each dead process, how it ended and its log file, followed by the
        last ``log_lines`` lines of that log.
        """
        dead = self.dead()
        if dead:
            raise MemberDied(
                f"{len(dead)} of the stack's processes in {self.run_dir} died:\n"
                + "\n".join(
                    f"{p.name} ({p.exit_reason()}), last lines of {p.log_path}:\n"
                    + p.log_tail(log_lines)
                    for p in dead
                )
            )

    def _write_components(self) -> None:
        """Copy the shared, broker and state-store component YAML into one resources
        directory, with :attr:`component_overrides` applied."""
        shutil.rmtree(self.components_dir, ignore_errors=True)
        self.components_dir.mkdir(parents=True)
        sources = [
            *sorted((COMPONENTS / "base").glob("*.yaml")),
            *sorted((COMPONENTS / "pubsub" / self.broker_name).glob("*.yaml")),
            *sorted((COMPONENTS / "state" / self.state_store).glob("*.yaml")),
        ]
        for source in sources:
            document = yaml.safe_load(source.read_text())
            if document["kind"] == "Configuration":
                self._trace_to(document)
            overrides = dict(self.component_overrides.get(document["metadata"]["name"], {}))
            if not self.scoped and document["kind"] == "Component":
                document["spec"]["metadata"] = [
                    m for m in document["spec"].get("metadata") or [] if m["name"] not in SCOPE_KEYS
                ]
            for item in document.get("spec", {}).get("metadata") or []:
                if item["name"] in overrides:
                    item["value"] = overrides.pop(item["name"])
            if overrides:
                document["spec"]["metadata"] += [
                    {"name": k, "value": v} for k, v in overrides.items()
                ]
            target = self.components_dir / f"{source.parent.name}-{source.name}"
            target.write_text(yaml.safe_dump(document, sort_keys=False))

    def _trace_to(self, configuration: dict) -> None:
        """Point the sidecars' tracing at :attr:`otlp_endpoint` (Dapr's ``tracing.otel``)."""
        if not self.otlp_endpoint:
            return
        address = self.otlp_endpoint.removeprefix("http://").rstrip("/")
        configuration["spec"]["tracing"]["otel"] = {
            "endpointAddress": address,
            "isSecure": False,
            "protocol": "http",
        }

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
            "WIDGET_CHANNELS": json.dumps(
                {
                    self.widget_channel: {
                        "name": "Example Bank help centre",
                        "allowed_origins": [self.widget_site_origin],
                        "identity_secret": self.widget_identity_secret,
                    },
                    # the same site, with the AI assistant answering customers itself
                    self.widget_assistant_channel: {
                        "name": "Example Bank assistant",
                        "allowed_origins": [
                            self.widget_site_origin,
                            self.widget_assistant_site_origin,
                        ],
                        "assistant": "answer",
                    },
                    # operators only: no AI in its conversations
                    self.widget_no_ai_channel: {
                        "name": "Example Bank, people only",
                        "allowed_origins": [self.widget_site_origin],
                        "assistant": "off",
                    },
                }
            ),
            "METRICS_PORT": str(ports.app_metrics),
            "METRICS_HOST": "127.0.0.1",
            "DAPR_HTTP_PORT": str(ports.http),
            "DAPR_GRPC_PORT": str(ports.grpc),
            "DAPR_API_TOKEN": self.dapr_api_token,
            "APP_API_TOKEN": self.app_api_token,
            "INBOX_STATE_DATABASE_URL": self.postgres.url,
            **(self.redis.env if self.redis else {}),
            **(self.broker.env if self.broker else {}),
            # the tests sign the same operator in many times a minute
            "LOGIN_RATE_LIMIT": "120/minute",
            "OTEL_SERVICE_NAME": name,
            **({"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint} if self.otlp_endpoint else {}),
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
        """Start (or restart) one instance (``gateway``, ``gateway-2``...) and its sidecar on
        fresh ports."""
        match = re.fullmatch(r"(.+)-(\d+)", name)
        app_id = match.group(1) if match and match.group(1) in SERVICES else name
        factory, max_concurrency = SERVICES[app_id]
        ports = Ports()
        if name == "gateway" and self._gateway_port:
            ports.app = self._gateway_port
        env = self._service_env(app_id, ports)
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
                "--ws-per-message-deflate",
                "false",
                *(EDGE_ARGS if app_id == "gateway" else ()),
            ],
            self.log_dir / f"{name}.log",
            env=env,
        ).start()
        sidecar = Process(
            f"{name}-daprd",
            [
                str(DAPRD),
                "--app-id",
                app_id,
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
                str(self.components_dir),
                "--config",
                str(self.components_dir / "base-config.yaml"),
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
        service = Service(name, app_id, ports, app, sidecar)
        self.services[name] = service
        return service

    def _wait_or_restart(self, name: str, attempts: int = 3) -> None:
        """Wait for ``name``; restart it, as Kubernetes would, when it lost a start-up race:
        a port it was given got taken meanwhile (daprd then exits with "could not listen on any
        endpoint"), or its sidecar failed to initialise a
        component because another sidecar was creating the same tables (Dapr's PostgreSQL
        state store runs ``CREATE TABLE IF NOT EXISTS``, which concurrent sessions can fail)."""
        races = (
            "address already in use",
            "could not listen on any endpoint",
            "already exists (sqlstate",
        )
        for attempt in range(1, attempts + 1):
            try:
                self.wait_ready(name)
                return
            except StartError as exc:
                if not any(race in str(exc).lower() for race in races) or attempt == attempts:
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
        if self in _RUNNING:
            _RUNNING.remove(self)
        # Sidecars and apps shut down gracefully in parallel, then the infrastructure they use.
        with ThreadPoolExecutor(max_workers=max(1, len(self.services))) as pool:
            list(pool.map(self.stop_service, list(self.services)))
        for infra in reversed(self._started):
            infra.stop()
        self._started.clear()

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url


@contextlib.contextmanager
def stand_in_stack(
    prefix: str, token_delay_s: float = 0.0, **stack_args: object
) -> Iterator[Stack]:
    """A benchmark's own stack on the stand-in model, in a fresh temporary directory: started
    (progress on stderr), then stopped with the stand-in and the directory removed, however
    the block ends. ``stack_args`` go to :class:`Stack` (``env``, ``replicas``, ...).

    Raises:
        StartError: the stand-in or the stack did not start.
    """
    from devstack.fake_ollama import MODEL, start_server

    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    fake = stack = None
    try:
        fake, ollama_url = start_server(run_dir / "fake-ollama.log", token_delay_s=token_delay_s)
        stack = Stack(
            run_dir,
            ollama_url,
            MODEL,
            progress=lambda line: print(line, file=sys.stderr),
            **stack_args,  # type: ignore[arg-type]
        )
        print(f"starting the stack in {run_dir}…", file=sys.stderr)
        stack.start()
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        if fake is not None:
            fake.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
