"""Throwaway PostgreSQL and Redis servers from the Debian packages, on loopback."""

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from devstack.procs import Process, free_port, port_open


def _pg_bin(tool: str) -> str:
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise FileNotFoundError(f"{tool} not found under /usr/lib/postgresql: run `make tools`")
    return found[-1]


class Postgres:
    """A fresh PostgreSQL cluster (wiped at start) on a free port, with one database.

    PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
    (created by the Debian package) in a directory that user owns.
    """

    def __init__(
        self, log_dir: Path, port: int | None = None, data_dir: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.user = "inbox"
        self.password = secrets.token_urlsafe(16)
        self.database = "inbox"
        self._owned_dir = data_dir is None
        self.base = Path(data_dir or tempfile.mkdtemp(prefix="inbox-pg-"))
        self.data_dir = self.base / "data"
        self.log_dir = log_dir
        self.process: Process | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        """libpq URL of the application database."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run_as(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else argv

    def start(self) -> "Postgres":
        """Create the cluster and the database, then serve."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)  # noqa: S103 - the postgres user must traverse it
        if self._as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            self._run_as(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--pwfile",
                    str(pwfile),
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        self._serve()
        admin_url = self.url.rsplit("/", 1)[0] + "/postgres"
        subprocess.run(
            [_pg_bin("psql"), admin_url, "-qc", f"CREATE DATABASE {self.database}"],
            check=True,
            capture_output=True,
        )
        return self

    def restart(self) -> "Postgres":
        """Stop the server (fast shutdown: clients are disconnected) and serve the same data
        on the same port again."""
        self._shut_down()
        self._serve()
        return self

    def _shut_down(self) -> None:
        # SIGTERM is a "smart" shutdown that waits for every pooled client to leave; SIGINT
        # is the fast one. runuser may exit before the postmaster: wait for its pid file.
        if self.process:
            self.process.stop(sig=signal.SIGINT)
            pid_file = self.data_dir / "postmaster.pid"
            deadline = time.monotonic() + 30
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _serve(self) -> None:
        self.process = Process(
            "postgres",
            self._run_as(
                [
                    _pg_bin("postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.base}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ]
            ),
            self.log_dir / "postgres.log",
        ).start()
        self.process.wait_until(lambda: port_open(self.port), 60, "listening port")
        self.process.wait_until(self._accepts_login, 30, "login")

    def _accepts_login(self) -> bool:
        done = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        )
        return done.returncode == 0

    def stop(self) -> None:
        self._shut_down()
        if self._owned_dir:
            shutil.rmtree(self.base, ignore_errors=True)


class Redis:
    """A password-protected redis-server on a free loopback port, with an append-only file
    (fsync every second), so a restart keeps streams, consumer groups and read models."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(16)
        self.log_dir = log_dir
        self.base = Path(tempfile.mkdtemp(prefix="inbox-redis-"))
        self.process: Process | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"INBOX_REDIS_HOST": self.host, "INBOX_REDIS_PASSWORD": self.password}

    def start(self) -> "Redis":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = Process(
            "redis",
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--requirepass",
                self.password,
                "--dir",
                str(self.base),
            ],
            self.log_dir / "redis.log",
        ).start()
        self.process.wait_until(lambda: port_open(self.port), 30, "listening port")
        return self

    def restart(self) -> "Redis":
        """Stop (SIGTERM flushes the append-only file) and serve the same data again."""
        if self.process:
            self.process.stop()
        return self.start()

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        shutil.rmtree(self.base, ignore_errors=True)
