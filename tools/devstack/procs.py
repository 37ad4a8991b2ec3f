"""Child processes with bounded readiness waits and guaranteed clean-up."""

import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

CACHE_DIR = Path(os.environ.get("INBOX_TOOLS_DIR", Path.home() / ".cache" / "support-inbox"))
"""Where `make tools` puts pinned binaries (outside the repository)."""
DEVSTACK_ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
"""Environment that lets a child ``python -m devstack.…`` import this package."""


_PORT_RANGE = (20000, 32767)
"""Below Linux's ephemeral range (32768-60999), so no outgoing connection takes a port between
the moment it is picked and the moment its server binds it."""


_HANDED_OUT: set[int] = set()
"""Ports :func:`free_port` already gave this process: a port picked now and bound later (a
demo site the gateway must know in advance) is never handed out twice meanwhile."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this process was
    not given before."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


class StartError(RuntimeError):
    """A process exited or did not become ready in time; the message ends with its log."""


class Process:
    """One child process in its own process group, logging to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self.stopped = False
        """True once :meth:`stop` or :meth:`kill` was called: its exit was asked for."""

    def start(self) -> "Process":
        self.stopped = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def died(self) -> bool:
        """It started and exited without :meth:`stop` or :meth:`kill` asking it to."""
        return self.popen is not None and not self.stopped and self.popen.poll() is not None

    def exit_reason(self) -> str:
        """How it ended: "exit code 1", "killed by signal 9 (SIGKILL)", or "still running"."""
        code = self.popen.poll() if self.popen else None
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        return f"exit code {code}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_until(
        self,
        ready: Callable[[], bool],
        timeout_s: float,
        what: str,
        peers: "tuple[Process, ...]" = (),
    ) -> None:
        """Poll ``ready`` every 0.1 s for up to ``timeout_s`` seconds.

        Raises:
            StartError: this process or one of ``peers`` exited, or ``ready`` stayed false.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in (self, *peers):
                if not process.running:
                    raise StartError(
                        f"{process.name} exited before {self.name} {what}:\n{process.log_tail()}"
                    )
            if ready():
                return
            time.sleep(0.1)
        raise StartError(f"{self.name}: no {what} after {timeout_s:g} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the process group, then SIGKILL what is left after ``grace_s``
        seconds."""
        self.stopped = True
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the process group at once (crash simulation, so an exit asked for)."""
        self.stopped = True
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    """True when ``url`` answers 2xx within 2 s."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False
