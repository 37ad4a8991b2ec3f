"""Message brokers from the Debian packages (RabbitMQ, NATS JetStream), on loopback.

Every broker here has the same small surface as :class:`~devstack.infra.Redis` and
:class:`~devstack.kafka.Kafka`: ``start()``, ``stop()``, ``restart()`` (same port, same data:
a broker restart mid-stream) and ``env`` (the ``INBOX_*`` variables the component YAML in
``dapr-components/pubsub/<broker>/`` reads through the env secret store).
"""

import asyncio
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inbox_common.events import TOPICS, dead_letter_topic

from devstack.procs import Process, StartError, free_port, port_open


class RabbitMQ:
    """A RabbitMQ node of its own (name, port, data directory), without plugins.

    The Debian package's wrapper script switches to the ``rabbitmq`` user and its system-wide
    node; the script under ``/usr/lib/rabbitmq/bin`` runs a node wherever its environment says.
    """

    SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")

    def __init__(
        self, log_dir: Path, port: int | None = None, consumer_timeout_s: int = 1800
    ) -> None:
        self.port = port or free_port()
        self.consumer_timeout_s = consumer_timeout_s
        self.dist_port = free_port()
        self.user = "inbox"
        self.password = secrets.token_urlsafe(16)
        self.log_dir = log_dir
        self.base = Path(tempfile.mkdtemp(prefix="inbox-rabbitmq-"))
        self.process: Process | None = None

    @property
    def env(self) -> dict[str, str]:
        url = f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/"
        return {"INBOX_RABBITMQ_URL": url}

    def start(self) -> "RabbitMQ":
        if not self.SERVER.exists():
            raise StartError(f"{self.SERVER} is missing: run `make tools`")
        config = self.base / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "default_vhost = /\n"
            # A delivery unacknowledged this long closes its channel and is requeued. After a
            # broker restart Dapr's component can leave a consumer behind that nobody reads;
            # this timeout is what returns the deliveries it took. It must stay above the
            # longest wait + LLM call of a prefetched delivery (RabbitMQ's default: 30 min).
            f"consumer_timeout = {self.consumer_timeout_s * 1000}\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        env = {
            "HOME": str(self.base),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": f"inbox{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_LOGS": "-",
        }
        self.process = Process(
            "rabbitmq", [str(self.SERVER)], self.log_dir / "rabbitmq.log", env=env
        ).start()
        self.process.wait_until(lambda: port_open(self.port), 120, "AMQP port")
        return self

    def restart(self) -> "RabbitMQ":
        """Stop the node and start it again with its queues and persistent messages."""
        if self.process:
            self.process.stop(grace_s=30)
        return self.start()

    def stop(self) -> None:
        if self.process:
            self.process.stop(grace_s=30)
        shutil.rmtree(self.base, ignore_errors=True)


class NatsJetStream:
    """``nats-server`` with JetStream (file storage) and token auth, and one stream per topic.

    Dapr's JetStream component does not create streams, so :meth:`start` creates them, as a
    platform team would with ``nats stream add``: stream ``<topic with _>``, subject
    ``<topic>``, for every topic and dead-letter topic.
    """

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.token = secrets.token_urlsafe(16)
        self.log_dir = log_dir
        self.base = Path(tempfile.mkdtemp(prefix="inbox-nats-"))
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"INBOX_NATS_URL": self.url, "INBOX_NATS_TOKEN": self.token}

    def start(self) -> "NatsJetStream":
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process = Process(
            "nats",
            [
                binary,
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--auth",
                self.token,
                "--jetstream",
                "--store_dir",
                str(self.base),
                "--server_name",
                f"inbox-{self.port}",
            ],
            self.log_dir / "nats.log",
        ).start()
        self.process.wait_until(lambda: port_open(self.port), 30, "client port")
        # a thread of its own: a caller may be inside an event loop (Playwright's sync API)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, add_streams(self.url, self.token)).result()
        return self

    def restart(self) -> "NatsJetStream":
        """Stop the server and start it again on the same store (streams and consumers kept)."""
        if self.process:
            self.process.stop()
        return self.start()

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        shutil.rmtree(self.base, ignore_errors=True)


async def add_streams(url: str, token: str | None = None) -> None:
    """One JetStream stream per topic and dead-letter topic (stream ``<topic with _>``,
    subject ``<topic>``), as ``nats stream add`` would: Dapr's component creates none."""
    import nats
    from nats.js.api import StorageType, StreamConfig

    connection = await nats.connect(url, token=token, connect_timeout=5)
    try:
        jetstream = connection.jetstream()
        for topic in TOPICS:
            for subject in (topic, dead_letter_topic(topic)):
                name = subject.replace(".", "_").replace("-", "_")
                await jetstream.add_stream(
                    StreamConfig(
                        name=name,
                        subjects=[subject],
                        storage=StorageType.FILE,
                        max_age=7 * 24 * 3600,  # seconds
                        duplicate_window=120,  # Dapr sets Nats-Msg-Id to the event id
                    )
                )
    finally:
        await connection.close()
