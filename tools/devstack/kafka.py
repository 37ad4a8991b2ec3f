"""A throwaway single-node Apache Kafka (KRaft, broker+controller) on loopback.

The jars come from Maven Central via tools/build-kafka.sh (`make tools`) and run with the
machine's java; there is no ZooKeeper in Kafka 4.x, so one JVM is the whole cluster.
"""

import base64
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import uuid
from pathlib import Path

from devstack.procs import CACHE_DIR, Process, StartError, free_port

KAFKA_VERSION = "4.3.1"
"""4.4.0 is listed on Central but unusable: unsigned, and kafka-tools(-api) 4.4.0 are missing."""
KAFKA_LIBS = CACHE_DIR / f"kafka-{KAFKA_VERSION}" / "libs"
# C1 only: a test broker carries little traffic, and C2's compiler threads would slow every
# start (~0.8 s) and compete for CPU with the rest of the stack under test.
_JVM = ["-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
# Kafka 4.x logs through log4j2 (its old log4j.properties format is gone); log4j2's properties
# format is the easiest to inline. Console output lands in the log file Process opens. The config
# dumps (hundreds of lines per start) are silenced; "Kafka Server started" etc. stay.
_LOG4J2 = """\
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.config.name = org.apache.kafka.common.config
logger.config.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _java() -> str:
    return shutil.which("java") or "java"


def _cds_archive() -> Path:
    """Where the class-data-sharing archive of a broker run goes (~45 MB, made once).

    Loading Kafka's classes from it instead of 50 jars cuts a start from ~2.5 s to ~1.7 s (2
    cores). It is named after the java binary's mtime since an archive from another JVM build
    is ignored (with a warning) rather than used; build-kafka.sh's reinstall deletes it.
    """
    mtime = int(Path(_java()).resolve().stat().st_mtime)
    return KAFKA_LIBS.parent / f"broker-{mtime}.jsa"


def kafka_java(main: str, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
    """argv running one of Kafka's main classes (broker or tool) from the installed jars."""
    if not KAFKA_LIBS.is_dir():
        raise FileNotFoundError(f"{KAFKA_LIBS} missing: run `make tools`")
    return [_java(), *jvm, "-cp", f"{KAFKA_LIBS}/*", main, *args]


def _metadata_brokers(port: int) -> int:
    """Brokers listed by a Metadata v4 request, or -1 when the broker does not answer yet.

    KRaft binds the listener early but only processes requests once the broker has caught up
    with the controller and been unfenced, so an answer listing a broker means clients work.
    """
    client_id = b"devstack"
    # header v1: api_key 3 (Metadata), version 4, correlation id, client id; body: no topics,
    # allow_auto_topic_creation false.
    body = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id + struct.pack(">i?", 0, False)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            reply = b""
            while len(reply) < 16:  # size, correlation id, throttle time, broker count
                chunk = s.recv(4096)
                if not chunk:
                    return -1
                reply += chunk
    except OSError:
        return -1
    return struct.unpack(">i", reply[12:16])[0]


def _cluster_id() -> str:
    """A random id as Kafka's `Uuid.randomUuid()` makes it (saves a JVM for `random-uuid`)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


class Kafka:
    """One combined broker+controller with auto-created topics, on free loopback ports."""

    def __init__(self, log_dir: Path, port: int | None = None, partitions: int = 4) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.partitions = partitions
        self.log_dir = log_dir
        self.data_dir: Path | None = None
        self.process: Process | None = None
        self._dumping: Path | None = None  # CDS archive this broker writes when it exits

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What dapr-components/pubsub/kafka/ reads through the env secret store."""
        return {"INBOX_KAFKA_BROKERS": self.host}

    def _format(self) -> None:
        """Write the config and format the storage with a new cluster id (once per data dir)."""
        self.data_dir = Path(tempfile.mkdtemp(prefix="inbox-kafka-"))
        config = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.data_dir / "logs",
            "auto.create.topics.enable": "true",
            "num.partitions": self.partitions,
            # A single node: every internal topic with one replica (the defaults want 3).
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # The first consumer group creates __consumer_offsets: 1 partition instead of 50.
            "offsets.topic.num.partitions": 1,
            "group.initial.rebalance.delay.ms": 0,
        }
        props = "".join(f"{key}={value}\n" for key, value in config.items())
        (self.data_dir / "server.properties").write_text(props)
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2)
        fmt = kafka_java(
            "kafka.tools.StorageTool",
            *("format", "-t", _cluster_id(), "-c", str(self.data_dir / "server.properties")),
            jvm=(*_JVM, *self._cds_opts(dump=False), *self._log_opts()),
        )
        done = subprocess.run(fmt, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            raise StartError(f"kafka storage format failed:\n{done.stdout}{done.stderr}")

    def _log_opts(self) -> tuple[str, ...]:
        assert self.data_dir is not None
        return (f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",)

    def _cds_opts(self, dump: bool = True) -> tuple[str, ...]:
        archive = _cds_archive()
        if archive.exists():
            return (f"-XX:SharedArchiveFile={archive}",)
        if dump and self._dumping is None:  # no archive yet: this broker writes it at its exit
            self._dumping = archive.with_suffix(f".{os.getpid()}.{self.port}.tmp")
            return (f"-XX:ArchiveClassesAtExit={self._dumping}", "-Xlog:cds*=off")
        return ()

    def start(self, timeout_s: float = 60) -> "Kafka":
        """Start the node (formatting a fresh data dir the first time) and wait for clients."""
        if self.data_dir is None:
            self._format()
        assert self.data_dir is not None
        self.process = Process(
            "kafka",
            kafka_java(
                "kafka.Kafka",
                str(self.data_dir / "server.properties"),
                jvm=(*_JVM, *self._cds_opts(), *self._log_opts()),
            ),
            self.log_dir / "kafka.log",
        ).start()
        try:
            self.process.wait_until(lambda: _metadata_brokers(self.port) > 0, timeout_s, "metadata")
        except StartError:
            self._stop_process()  # callers only stop what started
            raise
        return self

    def _stop_process(self) -> None:
        if not self.process:
            return
        self.process.stop(30)  # controlled shutdown; SIGKILL only if it hangs
        if self._dumping:
            # 143 = exited on SIGTERM after its shutdown hooks, so the archive is complete.
            popen = self.process.popen
            if popen and popen.returncode == 143 and self._dumping.exists():
                os.replace(self._dumping, _cds_archive())
            self._dumping.unlink(missing_ok=True)
            self._dumping = None

    def restart(self) -> "Kafka":
        """Graceful stop and start on the same ports with the same data (a broker bounce)."""
        self._stop_process()
        return self.start()

    def stop(self) -> None:
        self._stop_process()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
