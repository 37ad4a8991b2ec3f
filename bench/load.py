"""`make load`: replay real customer messages at a fixed rate and time each one end to end.

Usage::

    python -m bench.load --url http://127.0.0.1:8080 --api-key KEY --rate 20 --duration 60

The messages are BANKING77 (PolyAI, Casanueva et al. 2020, CC BY 4.0), read from
``../shared/data/support_messages.jsonl``. Each one opens a new conversation through the
customer channel API while ``--sockets`` operator WebSockets listen.

**Open loop.** Message *i* is due at ``start + i / rate`` whatever the gateway's answers
take, so a slow gateway shows up as latency, not as a lower send rate (no coordinated
omission). The report gives the achieved rate against the target and how late the client
itself sent (send lag).

**Latency** of one message runs from just before its POST to:

- *accepted*: the 202 answer;
- *stored*: the first ``conversation.updated`` push of its conversation on any socket (reason
  ``message.created``: the gateway pushes only after the read model is written);
- *insight*: the first push, on any socket, whose ``latest_insight_status`` is ``available``
  or ``unavailable``.

Every socket must see every final push; each (message, socket) pair that does not is a
*missed push*. An accepted message whose insight push reached no socket within ``--timeout``
seconds after the last send is *lost*; each lost one is then looked up through
``GET /api/v1/conversations/{id}`` to tell "stored, no push seen" from "not stored".

Exit status: 0 when every message was accepted and none was lost or missed, 1 otherwise,
2 for bad arguments or an unreachable inbox, 130 after Ctrl-C (the partial report is printed).
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import websockets
from devstack.dataset import DATA_FILE

REPO = Path(__file__).resolve().parents[1]
FINAL_STATUSES = ("available", "unavailable")
RATE_TOLERANCE = 0.05
"""The rate is held when the achieved send, accept and insight rates are within 5 % of the
target (the insight rate: insights over the time from the first to the last one)."""
HTTP_TIMEOUT_S = 30.0
"""Longest wait for one POST's answer (including a free connection from the pool)."""
MAX_CONNECTIONS = 256
"""HTTP connections to the gateway; more requests than this wait for one (up to
``HTTP_TIMEOUT_S``, then count as ``PoolTimeout``), and that wait counts as latency."""
SOCKET_OPEN_TIMEOUT_S = 15.0
PROGRESS_INTERVAL_S = 1.0
CHECK_CONCURRENCY = 4
"""Parallel GETs when looking up lost messages."""
CHECK_ATTEMPTS = 5
"""GETs per lost message while the gateway answers 429 (it limits each operator's requests)."""


BATCHED = "inbox.v2"
"""The operator socket's batched subprotocol, offered first as the web page does: each frame an
array of events."""


def events(ws: websockets.ClientConnection, raw: str | bytes) -> list[dict]:
    """The events of one frame: its array on the batched subprotocol, else the frame itself;
    none when it is not JSON."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    found = data if ws.subprotocol == BATCHED and isinstance(data, list) else [data]
    return [event for event in found if isinstance(event, dict)]


class LoadError(Exception):
    """The run cannot start: bad arguments, unreachable gateway, refused login or socket."""


@dataclass
class LoadConfig:
    """One run. ``count`` messages are sent at ``rate`` per second (``duration_s`` is
    ``count / rate``); stragglers are awaited ``timeout_s`` seconds after the last send."""

    url: str
    api_key: str
    operator: tuple[str, str]
    rate: float
    count: int
    sockets: int
    timeout_s: float
    data: Path
    json: bool = False
    until: str = "insight"
    """What a message must reach on every socket for the run to end: ``insight`` (its final
    insight) or ``stored`` (the message itself, when insights are meant to queue)."""

    @property
    def duration_s(self) -> float:
        return self.count / self.rate

    @property
    def ws_url(self) -> str:
        base = self.url.rstrip("/")
        scheme = "wss://" if base.startswith("https://") else "ws://"
        return scheme + base.split("://", 1)[1] + "/ws"


@dataclass
class Send:
    """One message: times are ``time.perf_counter()`` seconds."""

    index: int
    message_id: str
    due: float
    t0: float = 0.0
    answered: float | None = None
    outcome: str | None = None
    """``accepted``, ``HTTP <status>`` or the exception type; ``None`` while in flight."""
    conversation_id: str | None = None


class Pushes:
    """First sight of each conversation's pushes: over all sockets, and the final push per
    socket. Records every conversation (the 202 answer may come after the first push)."""

    def __init__(self, sockets: int) -> None:
        self.stored: dict[str, float] = {}
        self.final: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self.seen_final: list[set[str]] = [set() for _ in range(sockets)]

    def record(self, socket: int, push: dict, at: float) -> None:
        if push.get("type") != "conversation.updated" or not push.get("conversation_id"):
            return
        cid = push["conversation_id"]
        summary = push.get("conversation") or {}
        status = summary.get("latest_insight_status")
        if (
            push.get("reason") == "message.created"
            or (summary.get("message_count") or 0) >= 1
            or status in FINAL_STATUSES
        ):
            self.stored.setdefault(cid, at)
        if status in FINAL_STATUSES:
            self.final.setdefault(cid, at)
            self.status.setdefault(cid, status)
            self.seen_final[socket].add(cid)


def load_rows(path: Path) -> list[dict]:
    """Rows of ``{"id", "text", "intent", "category"}`` in file order.

    Raises:
        LoadError: the file is missing or holds no rows.
    """
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise LoadError(f"--data {path}: {exc.strerror or exc}") from None
    if not rows:
        raise LoadError(f"--data {path}: no messages in it")
    return rows


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of an error response (its text if it has none), at most 200 chars."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else response.text
    retry = response.headers.get("Retry-After")
    return (text[:200] + (f" (Retry-After: {retry})" if retry else "")).strip()


def _retry_after_s(response: httpx.Response) -> float:
    """The response's ``Retry-After`` in seconds (delta form), between 0.1 and 5; 1 if absent."""
    try:
        return min(5.0, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def percentiles(values_ms: list[float]) -> dict[str, float] | None:
    """p50, p95, p99 and max of ``values_ms`` in ms (``None`` without values)."""
    if not values_ms:
        return None
    if len(values_ms) == 1:
        cuts = values_ms * 99
    else:
        cuts = statistics.quantiles(values_ms, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values_ms), 1),
    }


class LoadRun:
    """One run against a running inbox; :meth:`run` returns the summary (see :func:`report`)."""

    def __init__(self, config: LoadConfig, rows: list[dict]) -> None:
        self.config = config
        self.rows = rows
        self.sends: list[Send] = []
        self.accepted: dict[str, Send] = {}
        self.errors: Counter[str] = Counter()
        self.error_samples: dict[str, str] = {}
        """The first reason given for each kind of error (response detail or exception)."""
        self.pushes = Pushes(config.sockets)
        self.reconnects = 0
        self.stop = asyncio.Event()
        self.interrupted = False
        self.start = 0.0
        self.last_send = 0.0
        self.end = 0.0
        self._first_signal = 0.0
        self._main: asyncio.Task | None = None
        self._tty = sys.stderr.isatty()
        self._last_progress = (0.0, 0)
        """(time, messages sent) at the last progress line."""
        self._progress_width = 0

    # ------------------------------------------------------------------ the run

    async def run(self) -> dict:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=self.config.url.rstrip("/"), timeout=HTTP_TIMEOUT_S, limits=limits
        ) as client:
            token = await self._login(client)
            first = await self._open_sockets(token)
            watchers = [
                asyncio.create_task(self._watch(i, ws, token)) for i, ws in enumerate(first)
            ]
            progress = asyncio.create_task(self._progress())
            try:
                await self._send_all(client)
                await self._wait_for_pushes()
            finally:
                self.end = time.perf_counter()
                for task in (progress, *watchers):
                    task.cancel()
                await asyncio.gather(progress, *watchers, return_exceptions=True)
                self._print_progress(final=True)
            lost = await self._check_lost(client, token)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        return self.summary(lost)

    def _on_signal(self) -> None:
        now = time.perf_counter()
        if not self.stop.is_set():
            self.interrupted = True
            self.stop.set()
            self._first_signal = now
            self._clear_progress()
            print("stopping: partial report follows (Ctrl-C again to abort)", file=sys.stderr)
        elif now - self._first_signal > 1.0 and self._main:
            # `uv run` forwards the terminal's Ctrl-C, so one press arrives twice at once.
            self._main.cancel()

    async def _login(self, client: httpx.AsyncClient) -> str:
        user, password = self.config.operator
        try:
            response = await client.post(
                "/api/v1/auth/login", json={"username": user, "password": password}
            )
        except httpx.HTTPError as exc:
            raise LoadError(
                f"cannot reach {self.config.url} ({type(exc).__name__}: {exc}); start the "
                "stack with `make run` and pass the URL it prints"
            ) from None
        if response.status_code != 200:
            raise LoadError(
                f"login as {user!r} at {self.config.url} failed: HTTP {response.status_code} "
                f"{response.text[:200]}; pass --operator USER:PASSWORD (INBOX_OPERATOR)"
            )
        return response.json()["access_token"]

    async def _open(self, token: str) -> websockets.ClientConnection:
        # the token rides in Sec-WebSocket-Protocol, never in the URL
        ws = await websockets.connect(
            self.config.ws_url,
            subprotocols=[BATCHED, "inbox.v1", f"inbox.bearer.{token}"],
            open_timeout=SOCKET_OPEN_TIMEOUT_S,
        )
        try:
            async with asyncio.timeout(SOCKET_OPEN_TIMEOUT_S):
                first = events(ws, await ws.recv())
        except BaseException:
            await ws.close()
            raise
        hello = first[0] if first else {}
        if hello.get("type") != "hello":
            await ws.close()
            raise LoadError(f"{self.config.ws_url}: expected hello first, got {hello!r}")
        return ws

    async def _open_sockets(self, token: str) -> list[websockets.ClientConnection]:
        opened = await asyncio.gather(
            *(self._open(token) for _ in range(self.config.sockets)), return_exceptions=True
        )
        failed = [o for o in opened if isinstance(o, BaseException)]
        if failed:
            for ws in opened:
                if not isinstance(ws, BaseException):
                    await ws.close()
            exc = failed[0]
            raise LoadError(
                f"operator WebSocket {self.config.ws_url} failed: {type(exc).__name__}: {exc}"
            )
        return opened  # type: ignore[return-value]

    async def _watch(self, index: int, ws: websockets.ClientConnection, token: str) -> None:
        """Record every push of socket ``index``; reconnect (counted) if it closes."""
        try:
            while True:
                try:
                    async for raw in ws:
                        at = time.perf_counter()
                        for push in events(ws, raw):
                            self.pushes.record(index, push, at)
                except websockets.ConnectionClosed:
                    pass
                self.reconnects += 1
                while True:
                    await asyncio.sleep(0.5)
                    try:
                        ws = await self._open(token)
                        break
                    except (OSError, TimeoutError, websockets.WebSocketException, LoadError):
                        continue
        finally:
            await ws.close()

    async def _send_all(self, client: httpx.AsyncClient) -> None:
        """Open loop: message ``i`` is due at ``start + i / rate``; a late client catches up."""
        in_flight: set[asyncio.Task] = set()
        self.start = time.perf_counter()
        for i in range(self.config.count):
            due = self.start + i / self.config.rate
            delay = due - time.perf_counter()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self.stop.wait()
                except TimeoutError:
                    pass
            if self.stop.is_set():
                break
            send = Send(i, str(uuid.uuid4()), due)
            self.sends.append(send)
            task = asyncio.create_task(self._post(client, send))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        stopped = asyncio.create_task(self.stop.wait())
        while in_flight and not self.stop.is_set():
            await asyncio.wait([*in_flight, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        unanswered = list(in_flight)
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)
        self.last_send = max((s.t0 or s.due for s in self.sends), default=self.start)

    async def _post(self, client: httpx.AsyncClient, send: Send) -> None:
        row = self.rows[send.index % len(self.rows)]
        body = {
            "message_id": send.message_id,
            "customer_id": "load-" + row["id"].rsplit("-", 1)[-1],
            "body": row["text"],
        }
        headers = {"X-API-Key": self.config.api_key}
        send.t0 = time.perf_counter()
        try:
            response = await client.post("/api/v1/inbound/messages", json=body, headers=headers)
        except asyncio.CancelledError:
            send.outcome = "unanswered (stopped)"
            self.errors[send.outcome] += 1
            raise
        except Exception as exc:  # every failure is counted; none stops the run
            send.outcome = type(exc).__name__
            reason = str(exc)[:200] or (
                f"no free connection within {HTTP_TIMEOUT_S:g} s: {MAX_CONNECTIONS} requests "
                "were already waiting for the gateway"
                if isinstance(exc, httpx.PoolTimeout)
                else repr(exc)
            )
            self.error_samples.setdefault(send.outcome, reason)
        else:
            if response.status_code == 202:
                send.outcome = "accepted"
                send.conversation_id = response.json()["conversation_id"]
                self.accepted[send.conversation_id] = send
            else:
                send.outcome = f"HTTP {response.status_code}"
                self.error_samples.setdefault(send.outcome, _detail(response))
        send.answered = time.perf_counter()
        if send.outcome != "accepted":
            self.errors[send.outcome] += 1

    def _complete(self) -> bool:
        """Every accepted message's final push reached every socket (``until="stored"``:
        every accepted message was pushed as stored)."""
        if self.config.until == "stored":
            return all(cid in self.pushes.stored for cid in self.accepted)
        return all(cid in seen for seen in self.pushes.seen_final for cid in self.accepted)

    async def _wait_for_pushes(self) -> None:
        deadline = self.last_send + self.config.timeout_s
        while not self.stop.is_set() and not self._complete():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(min(0.1, remaining)):
                    await self.stop.wait()
            except TimeoutError:
                pass

    async def _check_lost(self, client: httpx.AsyncClient, token: str) -> dict[str, int]:
        """Why each lost message never showed its insight on a socket, by reason; with
        ``until="stored"``, the messages never pushed as stored."""
        lost = [s for cid, s in self.accepted.items() if cid not in self.pushes.final]
        reasons: Counter[str] = Counter()
        if self.interrupted:  # still in flight: not lost, see the summary's "unfinished"
            return {}
        if self.config.until == "stored":
            missing = sum(1 for cid in self.accepted if cid not in self.pushes.stored)
            return {"not pushed as stored": missing} if missing else {}
        auth = {"Authorization": f"Bearer {token}"}
        gate = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def check(send: Send) -> str:
            async with gate:
                for _ in range(CHECK_ATTEMPTS):
                    try:
                        response = await client.get(
                            f"/api/v1/conversations/{send.conversation_id}", headers=auth
                        )
                    except httpx.HTTPError as exc:
                        return f"not checked ({type(exc).__name__})"
                    if response.status_code != 429:  # the operator's own API rate limit
                        break
                    await asyncio.sleep(_retry_after_s(response))
            if response.status_code == 404:
                return "not stored"
            if response.status_code != 200:
                return f"not checked (HTTP {response.status_code})"
            messages = response.json().get("messages", [])
            message = next((m for m in messages if m["message_id"] == send.message_id), None)
            if message is None:
                return "not stored"
            if (message.get("insight") or {}).get("status") in FINAL_STATUSES:
                return "insight stored, no push seen"
            return "stored, insight still processing"

        reasons.update(await asyncio.gather(*(check(s) for s in lost)))
        return dict(reasons)

    # ------------------------------------------------------------------ progress

    def _counts(self) -> dict[str, int]:
        stored = sum(1 for cid in self.accepted if cid in self.pushes.stored)
        insights = sum(1 for cid in self.accepted if cid in self.pushes.final)
        errors = sum(self.errors.values())
        return {
            "sent": len(self.sends),
            "accepted": len(self.accepted),
            "errors": errors,
            "stored": stored,
            "insights": insights,
            "in_flight": len(self.sends) - errors - insights,
        }

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            self._print_progress()

    def _print_progress(self, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.start:
            return
        counts = self._counts()
        since = now - (self._last_progress[0] or self.start)
        recent = (counts["sent"] - self._last_progress[1]) / since if since > 0 else 0.0
        self._last_progress = (now, counts["sent"])
        errors = f"errors {counts['errors']}"
        if self.errors:
            errors += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) + ")"
        line = (
            f"{now - self.start:6.1f} s | sent {counts['sent']} | accepted {counts['accepted']} "
            f"| {errors} | stored {counts['stored']} | insights {counts['insights']} "
            f"| in flight {counts['in_flight']} | rate {recent:.1f} msg/s"
        )
        if self._tty:
            padding = " " * max(0, self._progress_width - len(line))
            self._progress_width = len(line)
            sys.stderr.write("\r" + line + padding + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def _clear_progress(self) -> None:
        if self._tty and self._progress_width:
            sys.stderr.write("\n")
            self._progress_width = 0

    # ------------------------------------------------------------------ summary

    def summary(self, lost_reasons: dict[str, int]) -> dict:
        """The run's numbers; latencies in ms, rates in messages per second."""
        config = self.config
        sent = len(self.sends)
        window_s = (self.last_send - self.start) + 1 / config.rate if sent else 0.0
        send_rate = sent / window_s if window_s else 0.0
        accept_rate = len(self.accepted) / window_s if window_s else 0.0
        accepted = list(self.accepted.values())
        finals = [self.pushes.final[cid] for cid in self.accepted if cid in self.pushes.final]
        # Insights arrive as fast as they were sent when the pipeline keeps up: n of them
        # span (n - 1) send intervals, whatever the latency; a backlog stretches the span.
        insight_span_s = (max(finals) - min(finals)) + 1 / config.rate if finals else 0.0
        insight_rate = len(finals) / insight_span_s if finals else 0.0
        statuses = Counter(
            self.pushes.status[cid] for cid in self.accepted if cid in self.pushes.status
        )
        missed = sum(
            1
            for cid in self.accepted
            if cid in self.pushes.final
            for seen in self.pushes.seen_final
            if cid not in seen
        )

        def latencies(times: dict[str, float]) -> dict[str, float] | None:
            return percentiles(
                [(times[cid] - s.t0) * 1000 for cid, s in self.accepted.items() if cid in times]
            )

        return {
            "url": config.url,
            "sockets": config.sockets,
            "target_rate_per_s": config.rate,
            "send_rate_per_s": round(send_rate, 2),
            "accept_rate_per_s": round(accept_rate, 2),
            "rate_held": bool(
                sent == config.count
                and abs(send_rate - config.rate) <= RATE_TOLERANCE * config.rate
                and accept_rate >= (1 - RATE_TOLERANCE) * config.rate
                and insight_rate >= (1 - RATE_TOLERANCE) * config.rate
            ),
            "duration_s": round(window_s, 2),
            "elapsed_s": round(self.end - self.start, 2) if self.start else 0.0,
            "planned": config.count,
            "sent": sent,
            "accepted": len(self.accepted),
            "errors": dict(sorted(self.errors.items())),
            "error_samples": dict(sorted(self.error_samples.items())),
            "stored": sum(1 for cid in self.accepted if cid in self.pushes.stored),
            "insights": len(finals),
            "insight_status": dict(sorted(statuses.items())),
            "insight_throughput_per_s": round(insight_rate, 2),
            "latency_ms": {
                "accepted": percentiles(
                    [(s.answered - s.t0) * 1000 for s in accepted if s.answered is not None]
                ),
                "stored": latencies(self.pushes.stored),
                "insight": latencies(self.pushes.final),
            },
            "send_lag_ms": percentiles([(s.t0 - s.due) * 1000 for s in self.sends if s.t0]),
            "lost": sum(lost_reasons.values()),
            "unfinished": len(self.accepted) - len(finals) if self.interrupted else 0,
            "lost_reasons": lost_reasons,
            "missed_pushes": missed,
            "socket_reconnects": self.reconnects,
            "timeout_s": config.timeout_s,
            "interrupted": self.interrupted,
        }


def run_on_stack(  # noqa: ANN001 - a devstack Stack
    stack,
    rows: list[dict],
    rate: float,
    count: int,
    timeout_s: float,
    sockets: int = 1,
    until: str = "insight",
) -> dict:
    """``count`` messages offered at ``rate`` msg/s through a devstack stack's channel API while
    ``sockets`` operator sockets listen, the run ending at ``until`` (see :class:`LoadConfig`);
    its :meth:`LoadRun.summary`.

    Raises:
        LoadError: the gateway, the login or a socket refused the run.
    """
    config = LoadConfig(
        url=stack.gateway_url,
        api_key=stack.channel_key,
        operator=stack.operator,
        rate=rate,
        count=count,
        sockets=sockets,
        timeout_s=timeout_s,
        data=DATA_FILE,
        until=until,
    )
    return asyncio.run(LoadRun(config, rows).run())


def _listing(counter: dict[str, int], sep: str = ": ") -> str:
    """`` (a: 1, b: 2)``, or nothing for an empty ``counter``."""
    return " (" + ", ".join(f"{k}{sep}{v}" for k, v in counter.items()) + ")" if counter else ""


def report(summary: dict) -> str:
    """The human-readable report of :meth:`LoadRun.summary`."""
    s = summary
    rate, held = s["target_rate_per_s"], "held" if s["rate_held"] else "NOT held"
    partial = " (INTERRUPTED: partial)" if s["interrupted"] else ""
    lines = [
        f"Load test of {s['url']}: {s['planned']} messages at {rate:g} msg/s, "
        f"{s['sockets']} operator sockets{partial}",
        f"  rate       target {rate:g} msg/s, sent {s['send_rate_per_s']:g} msg/s, "
        f"accepted {s['accept_rate_per_s']:g} msg/s, insights {s['insight_throughput_per_s']:g} "
        f"msg/s: {held} (all within {RATE_TOLERANCE:.0%})",
        f"  duration   {s['duration_s']:g} s sending, {s['elapsed_s']:g} s in all (until the "
        f"last insight push, at most {s['timeout_s']:g} s after the last send)",
        f"  messages   sent {s['sent']}, accepted {s['accepted']}, "
        f"errors {sum(s['errors'].values())}{_listing(s['errors'])}",
        f"  pushes     stored {s['stored']}, insights {s['insights']}"
        f"{_listing(s['insight_status'], ' ')}",
        "  latency (ms)                p50      p95      p99      max",
    ]
    rows = [
        ("submitted -> 202", s["latency_ms"]["accepted"]),
        ("submitted -> stored", s["latency_ms"]["stored"]),
        ("submitted -> insight", s["latency_ms"]["insight"]),
        ("send lag (client)", s["send_lag_ms"]),
    ]
    for name, p in rows:
        cells = "".join(f" {p[k]:8.1f}" for k in ("p50", "p95", "p99", "max")) if p else "  -"
        lines.append(f"    {name:<22}{cells}")
    lines += [
        f"  lost       {s['lost']}{_listing(s['lost_reasons'])}"
        + (f"; {s['unfinished']} in flight when stopped" if s["unfinished"] else ""),
        f"  missed     {s['missed_pushes']} final pushes missed by a socket, "
        f"{s['socket_reconnects']} socket reconnects",
    ]
    for kind, sample in s["error_samples"].items():
        lines.append(f"  {kind + ':':<10} {sample}")
    if "HTTP 401" in s["errors"]:
        lines.append("  hint: HTTP 401 on the channel API means a wrong --api-key (INBOX_API_KEY)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> LoadConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Replay real customer messages at a fixed rate through the channel API, "
        "with operator WebSockets listening; report rate, latency, errors and lost messages.",
    )
    env = os.environ.get
    parser.add_argument(
        "--url",
        default=env("INBOX_URL"),
        help="gateway base URL (INBOX_URL), e.g. the one `make run` prints",
    )
    parser.add_argument(
        "--api-key", default=env("INBOX_API_KEY"), help="channel API key (INBOX_API_KEY)"
    )
    parser.add_argument(
        "--operator",
        default=env("INBOX_OPERATOR") or "demo:demo-password",
        help="USER:PASSWORD of an operator (INBOX_OPERATOR; default demo:demo-password)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--duration", type=float, help="seconds of sending (default 60)")
    amount.add_argument("--count", type=int, help="messages to send, instead of --duration")
    parser.add_argument("--sockets", type=int, default=4, help="operator WebSockets listening")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for stragglers after the last send (default 60)",
    )
    parser.add_argument("--data", type=Path, default=DATA_FILE, help="messages (JSON lines)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON on stdout (the report then goes to stderr)",
    )
    args = parser.parse_args(argv)
    if not args.url or not args.api_key:
        given = {"--url (INBOX_URL)": args.url, "--api-key (INBOX_API_KEY)": args.api_key}
        missing = " and ".join(name for name, value in given.items() if not value)
        parser.error(
            f"{missing} missing: start the inbox with `make run` and pass the URL and the "
            "channel API key it prints, e.g. `make load URL=http://127.0.0.1:8080 "
            "API_KEY=dev-channel-...` (or a cluster's gateway URL and key)"
        )
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"--url {args.url!r}: expected http://host:port or https://...")
    user, sep, password = args.operator.partition(":")
    if not sep or not user:
        parser.error(f"--operator {args.operator!r}: expected USER:PASSWORD")
    if args.rate <= 0:
        parser.error(f"--rate {args.rate:g}: must be above 0")
    if args.sockets < 1:
        parser.error(f"--sockets {args.sockets}: at least 1 (the insight push is measured on them)")
    if args.count is not None:
        if args.count < 1:
            parser.error(f"--count {args.count}: at least 1")
        count = args.count
    else:
        duration_s = 60.0 if args.duration is None else args.duration
        if duration_s <= 0:
            parser.error(f"--duration {duration_s:g}: must be above 0")
        count = max(1, round(duration_s * args.rate))
    if args.timeout < 0:
        parser.error(f"--timeout {args.timeout:g}: must be 0 or more")
    return LoadConfig(
        url=args.url.rstrip("/"),
        api_key=args.api_key,
        operator=(user, password),
        rate=args.rate,
        count=count,
        sockets=args.sockets,
        timeout_s=args.timeout,
        data=args.data,
        json=args.json,
    )


def succeeded(summary: dict) -> bool:
    return (
        not summary["interrupted"]
        and summary["accepted"] == summary["sent"] == summary["planned"]
        and summary["lost"] == 0
        and summary["missed_pushes"] == 0
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        rows = load_rows(config.data)
        print(
            f"Sending {config.count} real customer messages (BANKING77, PolyAI, CC BY 4.0) "
            f"at {config.rate:g} msg/s to {config.url} with {config.sockets} operator "
            f"sockets; waiting up to {config.timeout_s:g} s for stragglers",
            file=sys.stderr,
        )
        summary = asyncio.run(LoadRun(config, rows).run())
    except LoadError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nload: aborted", file=sys.stderr)
        return 130
    if config.json:
        print(report(summary), file=sys.stderr)
        print(json.dumps(summary, indent=2))
    else:
        print(report(summary))
    if summary["interrupted"]:
        return 130
    return 0 if succeeded(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
