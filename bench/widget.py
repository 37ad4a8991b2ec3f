"""Widget benchmark: many customers chatting with the AI assistant at once, through the widget.

Starts its own stack (Redis broker and state store, ``--replicas`` instances of each service,
each with its daprd sidecar) with the stand-in model writing one word every
``--token-delay-ms`` ms. Then ``--customers`` customers open a widget session on the
assistant's channel (``answer`` mode: the AI replies to them itself), each on one gateway
replica in turn (customer *i* on replica *i* mod ``--replicas``: its HTTP calls and its socket),
connect their widget socket, and each sends ``--messages`` messages one after another: the
next goes ``--think-ms`` after the answer to the previous one arrived on the socket. The
customers start spread over one think time (customer *i* after *i/customers* of it), then run
at their own pace (a closed loop: a slower system gets fewer messages per second).

The messages are the seed data (BANKING77, PolyAI, CC BY 4.0), leaving out those the assistant
hands to a person whatever the model writes (``ai_worker.assistant.hands_off_first``: asking
for a person, complaints, possible fraud): this measures answers.

Per message, from just before its POST to ``/api/v1/widget/messages``:

- *accepted*: the 202 (with the retries a 429 or 503 asks for, each after its
  ``Retry-After``, with the same ``message_id``);
- *first sentence*: the first ``insight.delta`` for the message on the customer's socket (the
  reply streaming in; the assistant streams complete sentences only, see
  ``ai_worker.assistant.customer_safe_prefix``), or the full answer when no delta came first
  (a model that answers within ``AI_STREAM_INTERVAL_MS`` sends none);
- *full answer*: the ``conversation`` push whose messages hold an ``assistant`` message after
  this one (the stored answer).

A message is *answered* when its answer arrives, *handed off* when the push shows the
conversation ``handed_off`` instead (the guard held the reply back; a person answers from then
on, so that customer sends no more), *lost* when neither arrives within ``--timeout`` seconds
of its POST, and *failed* when the POST got another answer than 202. A customer whose message
was lost or failed sends no more either: a late answer could not be told from the next one's.

Throughput is messages answered over the wall time from the first POST to the last answer.

**Limits.** ``CUSTOMER_RATE_LIMIT`` (20/minute per customer), ``WIDGET_CHANNEL_RATE_LIMIT``
(600/minute of messages per channel) and the new-session limits (30/minute per address, 600 per
channel) would stop the load before the system does, so the run raises them
(:data:`RAISED_LIMITS`, passed to every gateway through the stack's environment) and says
so; ``--default-limits`` keeps the defaults, to see the 429s.
The counters are still kept (in the state store, across replicas), so their cost is measured.

Usage: ``PYTHONPATH=tools uv run --frozen python -m bench.widget [--customers 100]
[--messages 3] [--think-ms 500] [--replicas 2] [--token-delay-ms 0] [--timeout 120]``.
Prints a table in ms and msg/s (stdout; progress on stderr). Exits 0 when every message was
answered or handed off, 1 when one was lost or failed, 2 for bad arguments or a stack that did
not start.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import websockets
from ai_worker.assistant import hands_off_first
from ai_worker.settings import Settings as AiWorkerSettings
from devstack.procs import StartError
from devstack.seed import load_messages
from devstack.stack import Stack, stand_in_stack

API = "/api/v1/widget"
WS_PROTOCOL = "inbox.v1"
RAISED_LIMITS = {
    "CUSTOMER_RATE_LIMIT": "1000/minute",
    "WIDGET_CHANNEL_RATE_LIMIT": "1000000/minute",
    "WIDGET_SESSION_RATE_LIMIT": "1000000/minute",
    "WIDGET_CHANNEL_SESSION_RATE_LIMIT": "1000000/minute",
}
"""The widget limits for a load run, far above what it sends: every customer of the run opens
its session from one address, 127.0.0.1."""
DEFAULT_LIMITS = {
    "CUSTOMER_RATE_LIMIT": "20/minute",
    "WIDGET_CHANNEL_RATE_LIMIT": "600/minute",
    "WIDGET_SESSION_RATE_LIMIT": "30/minute",
    "WIDGET_CHANNEL_SESSION_RATE_LIMIT": "600/minute",
}
ACCESS_LIFETIME_S = 86_400
"""``CUSTOMER_TOKEN_TTL_S`` for the run, so that no access token expires in a long one (the
default 15 minutes would close the sockets with 4401; renewal is not what is measured)."""
REFERENCE = "50 msg/s average, 100+ at peak with two load-balanced socket servers"
"""The throughput the system this replaces reported for itself."""
HTTP_TIMEOUT_S = 30.0
RETRY_FOR_S = 60.0
"""How long one POST keeps retrying 429, 503 and dropped connections before it fails."""
SOCKET_OPEN_TIMEOUT_S = 20.0
PROGRESS_INTERVAL_S = 5.0


@dataclass
class Message:
    """One customer message. Times are ``time.perf_counter()`` seconds; ``None`` until seen."""

    customer: int
    message_id: str
    body: str
    t0: float = 0.0
    accepted_at: float | None = None
    first_token_at: float | None = None
    answered_at: float | None = None
    deltas: int = 0
    outcome: str = "pending"
    """``answered``, ``handed off``, ``lost``, ``failed: <why>``, or ``pending`` in flight."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def ms(self, at: float | None) -> float | None:
        return None if at is None else (at - self.t0) * 1000

    def see(self, frame: dict, at: float) -> None:
        """Take one frame of the customer's socket (received at ``at``) into account."""
        if self.done.is_set():
            return
        if frame.get("type") == "insight.delta" and frame.get("message_id") == self.message_id:
            self.deltas += 1
            if self.first_token_at is None:
                self.first_token_at = at
        elif frame.get("type") == "conversation":
            messages = frame.get("messages") or []
            ids = [m.get("message_id") for m in messages]
            if self.message_id not in ids:
                return  # not stored yet
            later = messages[ids.index(self.message_id) + 1 :]
            if any(m.get("author_role") == "assistant" for m in later):
                self.answered_at = at
                if self.first_token_at is None:  # the answer came whole: its first sentence too
                    self.first_token_at = at
                self.finish("answered")
            elif frame.get("assistant") == "handed_off":
                self.answered_at = at
                self.finish("handed off")

    def finish(self, outcome: str) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()


@dataclass
class Customer:
    """One widget session on one gateway replica (``base`` its URL)."""

    index: int
    base: str
    replica: str
    access_token: str = ""
    conversation_id: str = ""
    socket: websockets.ClientConnection | None = None
    current: Message | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Config:
    """One run: ``think_s``, ``timeout_s`` and ``token_delay_s`` in seconds."""

    customers: int
    messages: int
    think_s: float
    replicas: int
    token_delay_s: float
    timeout_s: float
    default_limits: bool


class WidgetLoad:
    """The customers of one run against a started ``stack``; :meth:`run` returns the
    summary (see :meth:`summary`)."""

    def __init__(self, stack: Stack, config: Config, texts: list[str]) -> None:
        self.stack = stack
        self.config = config
        self.texts = texts
        self.origin = stack.widget_site_origin
        replicas = [name for name in stack.services if name.split("-")[0] == "gateway"]
        self.customers = [
            Customer(
                i, stack.services[replicas[i % len(replicas)]].url, replicas[i % len(replicas)]
            )
            for i in range(config.customers)
        ]
        self.messages: list[Message] = []
        self.statuses: Counter[str] = Counter()
        """HTTP answers other than 201/202 (and transport errors), on sessions and messages."""
        self.reconnects = 0
        self.start = 0.0
        self.end = 0.0

    async def run(self) -> dict:
        limits = httpx.Limits(max_connections=self.config.customers + 16)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, limits=limits) as http:
            await asyncio.gather(*(self._open(http, c) for c in self.customers))
            listeners = [asyncio.create_task(self._listen(c)) for c in self.customers]
            self.start = time.perf_counter()
            progress = asyncio.create_task(self._progress())
            try:
                await asyncio.gather(*(self._chat(http, c) for c in self.customers))
            finally:
                self.end = max(
                    (m.answered_at for m in self.messages if m.answered_at), default=self.start
                )
                for task in (progress, *listeners):
                    task.cancel()
                await asyncio.gather(progress, *listeners, return_exceptions=True)
                await asyncio.gather(
                    *(c.socket.close() for c in self.customers if c.socket),
                    return_exceptions=True,
                )
        return self.summary()

    # ------------------------------------------------------------------ one customer

    async def _request(
        self, http: httpx.AsyncClient, customer: Customer, path: str, body: dict, auth: bool
    ) -> httpx.Response | str:
        """POST ``body`` to the customer's replica; retries 429, 503 and dropped connections
        (each counted) for up to :data:`RETRY_FOR_S`. Returns the final response, or why there
        was none."""
        headers = {"Origin": self.origin, **(customer.auth if auth else {})}
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            try:
                response = await http.post(customer.base + path, json=body, headers=headers)
            except httpx.TransportError as exc:
                self.statuses[f"{path}: {type(exc).__name__}"] += 1
                if time.monotonic() > deadline:
                    return type(exc).__name__
                await asyncio.sleep(1.0)
                continue
            if response.status_code < 300:
                return response
            self.statuses[f"{path}: HTTP {response.status_code}"] += 1
            if response.status_code not in (429, 503) or time.monotonic() > deadline:
                return response
            try:
                retry_s = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                retry_s = 1.0
            await asyncio.sleep(min(10.0, max(0.1, retry_s)))

    async def _open(self, http: httpx.AsyncClient, customer: Customer) -> None:
        """Start the customer's session and connect its socket (hello, then its view)."""
        channel = self.stack.widget_assistant_channel
        answer = await self._request(http, customer, f"{API}/sessions", {"channel": channel}, False)
        if isinstance(answer, str) or answer.status_code != 201:
            why = answer if isinstance(answer, str) else f"HTTP {answer.status_code} {answer.text}"
            raise StartError(f"customer {customer.index}: no widget session: {why[:300]}")
        session = answer.json()
        customer.access_token = session["access_token"]
        customer.conversation_id = session["conversation_id"]
        customer.socket = await self._connect(customer)

    async def _connect(self, customer: Customer) -> websockets.ClientConnection:
        url = customer.base.replace("http://", "ws://", 1) + f"{API}/ws"
        socket = await websockets.connect(
            url,
            # the token rides in Sec-WebSocket-Protocol, as the widget sends it
            subprotocols=[WS_PROTOCOL, f"inbox.bearer.{customer.access_token}"],
            origin=self.origin,
            open_timeout=SOCKET_OPEN_TIMEOUT_S,
            max_size=None,
        )
        async with asyncio.timeout(SOCKET_OPEN_TIMEOUT_S):
            hello = json.loads(await socket.recv())
        if hello.get("type") != "hello":
            await socket.close()
            raise StartError(f"customer {customer.index}: expected hello first, got {hello!r}")
        return socket

    async def _listen(self, customer: Customer) -> None:
        """Hand each frame of the customer's socket to its message in flight; reconnect
        (counted) when the socket closes: the view pushed on connecting then tells whether
        the answer came meanwhile."""
        while True:
            try:
                async for raw in customer.socket:
                    at = time.perf_counter()
                    frame = json.loads(raw)
                    if customer.current is not None and isinstance(frame, dict):
                        customer.current.see(frame, at)
            except websockets.ConnectionClosed:
                pass
            self.reconnects += 1
            while True:
                await asyncio.sleep(0.5)
                try:
                    customer.socket = await self._connect(customer)
                    break
                except (OSError, TimeoutError, websockets.WebSocketException, StartError):
                    continue

    async def _chat(self, http: httpx.AsyncClient, customer: Customer) -> None:
        """Send the customer's messages, each after the previous answer and a think time."""
        config = self.config
        # customers start spread over one think time rather than all in the same instant
        await asyncio.sleep(config.think_s * customer.index / config.customers)
        for n in range(config.messages):
            if n:
                await asyncio.sleep(config.think_s)
            text = self.texts[(customer.index * config.messages + n) % len(self.texts)]
            message = Message(customer.index, str(uuid.uuid4()), text)
            self.messages.append(message)
            # set before the POST: the push may overtake the 202
            customer.current = message
            message.t0 = time.perf_counter()
            answer = await self._request(
                http,
                customer,
                f"{API}/messages",
                {"message_id": message.message_id, "body": text},
                True,
            )
            if isinstance(answer, str) or answer.status_code != 202:
                why = answer if isinstance(answer, str) else f"HTTP {answer.status_code}"
                message.finish(f"failed: {why}")
                return
            message.accepted_at = time.perf_counter()
            remaining = message.t0 + config.timeout_s - time.perf_counter()
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    await message.done.wait()
            except TimeoutError:
                message.finish("lost")
            if message.outcome != "answered":
                return

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            outcomes = Counter(m.outcome for m in self.messages)
            print(
                f"  {time.perf_counter() - self.start:6.1f} s: sent {len(self.messages)}, "
                f"answered {outcomes['answered']}, in flight {outcomes['pending']}",
                file=sys.stderr,
            )

    # ------------------------------------------------------------------ results

    def summary(self) -> dict:
        """The run as JSON-ready data: counts, ``wall_s`` (s), ``msg_per_s``, and
        ``latency_ms`` with :func:`percentiles` (ms) of ``accepted``, ``first_token`` and
        ``full_answer``."""
        config = self.config
        outcomes = Counter(m.outcome.split(":")[0] for m in self.messages)
        answered = [m for m in self.messages if m.outcome == "answered"]
        wall_s = self.end - self.start
        rejected = Counter()
        for key, count in self.statuses.items():
            rejected[key.rsplit(": ", 1)[1]] += count
        return {
            "planned": config.customers * config.messages,
            "sent": len(self.messages),
            "accepted": sum(1 for m in self.messages if m.accepted_at is not None),
            "answered": len(answered),
            "handed_off": outcomes["handed off"],
            "lost": outcomes["lost"],
            "failed": outcomes["failed"],
            "failures": sorted({m.outcome for m in self.messages if m.outcome.startswith("fail")}),
            "streamed": sum(1 for m in answered if m.deltas),
            "deltas_per_answer": (
                round(statistics.mean(m.deltas for m in answered), 1) if answered else 0
            ),
            "wall_s": round(wall_s, 2),
            "msg_per_s": round(len(answered) / wall_s, 2) if wall_s > 0 else 0.0,
            "latency_ms": {
                "accepted": percentiles(
                    [m.ms(m.accepted_at) for m in self.messages if m.accepted_at]
                ),
                "first_token": percentiles(
                    [m.ms(m.first_token_at) for m in answered if m.first_token_at]
                ),
                "full_answer": percentiles([m.ms(m.answered_at) for m in answered]),
            },
            "http_429": rejected["HTTP 429"],
            "rejections": dict(sorted(self.statuses.items())),
            "socket_reconnects": self.reconnects,
            "customers_per_replica": dict(
                sorted(Counter(c.replica for c in self.customers).items())
            ),
        }


def percentiles(values_ms: list[float]) -> dict[str, float] | None:
    """p50, p95, p99 and max of ``values_ms`` in ms (inclusive method), with ``n``; ``None``
    without values."""
    if not values_ms:
        return None
    cuts = (
        values_ms * 99
        if len(values_ms) == 1
        else statistics.quantiles(values_ms, n=100, method="inclusive")
    )
    return {
        "p50": round(cuts[49], 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "max": round(max(values_ms), 1),
        "n": len(values_ms),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def report(summary: dict, config: Config, machine: dict[str, str]) -> str:
    """The human-readable table of :meth:`WidgetLoad.summary`."""
    s = summary
    limits = DEFAULT_LIMITS if config.default_limits else RAISED_LIMITS
    per_replica = ", ".join(f"{k} {v}" for k, v in s["customers_per_replica"].items())
    ai_concurrency = AiWorkerSettings.model_fields["ai_max_concurrency"].default
    lines = [
        f"Widget load: {config.customers} customers x {config.messages} messages, AI assistant "
        f"answering (channel in answer mode), think time {config.think_s * 1000:g} ms, "
        f"stand-in model {config.token_delay_s * 1000:g} ms per word; closed loop (each "
        "customer waits for its answer, thinks, then sends the next)",
        f"stack: Redis broker and state store, {config.replicas} replica(s) of each service "
        f"(ai-worker AI_MAX_CONCURRENCY {ai_concurrency} each); customers per gateway: "
        f"{per_replica}",
        "limits: "
        + ", ".join(f"{k}={v}" for k, v in limits.items())
        + (
            " (the defaults)"
            if config.default_limits
            else " raised for this run (defaults 20/minute per customer, 600/minute per "
            "channel): a customer's limit is not what is measured"
        ),
        f"machine: {machine['cores']} cores; load average (1, 5, 15 min) "
        f"{machine['before']} before the stack started, {machine['after']} after the run; "
        "the customers run on the same machine",
        "",
        f"{'latency, from the POST (ms)':<44}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'n':>6}",
    ]
    rows = (
        ("accepted (202)", "accepted"),
        ("first sentence (insight.delta or answer)", "first_token"),
        ("full answer (conversation push)", "full_answer"),
    )
    for name, key in rows:
        p = s["latency_ms"][key]
        cells = (
            "".join(f"{p[k]:>9.0f}" for k in ("p50", "p95", "p99", "max")) + f"{p['n']:>6}"
            if p
            else f"{'-':>9}"
        )
        lines.append(f"{name:<44}{cells}")
    lines += [
        "",
        f"{'messages':<44}planned {s['planned']}, sent {s['sent']}, accepted {s['accepted']}, "
        f"answered {s['answered']}, handed off {s['handed_off']}, lost {s['lost']}, "
        f"failed {s['failed']}",
        f"{'throughput (answered / wall time)':<44}{s['msg_per_s']:.2f} msg/s "
        f"({s['answered']} answered in {s['wall_s']:.2f} s)",
        f"{'streamed':<44}{s['streamed']} of {s['answered']} answers had a sentence before the "
        f"full answer; {s['deltas_per_answer']:g} insight.delta frames per answer",
        f"{'HTTP 429 seen':<44}{s['http_429']}",
        f"{'other rejections and retries':<44}"
        + (
            ", ".join(f"{k} x{v}" for k, v in s["rejections"].items() if "HTTP 429" not in k)
            or "none"
        ),
        f"{'socket reconnects':<44}{s['socket_reconnects']}",
        "",
        f"{'throughput side by side':<44}{'msg/s':>12}",
        f"{'  measured here':<44}{s['msg_per_s']:>12.2f}  {config.replicas} gateway replica(s), "
        "this machine, stand-in model",
        f"{'  reference (their reported figure)':<44}{'50 / 100+':>12}  {REFERENCE}; the "
        "replaced system's own figure, not measured here",
    ]
    for failure in s["failures"]:
        lines.append(f"failure: {failure}")
    return "\n".join(lines)


def succeeded(summary: dict) -> bool:
    """No message lost or failed. (A handoff ends a customer's run early: it is an answer
    of the system, a person's to give, not a loss.)"""
    return summary["lost"] == 0 and summary["failed"] == 0 and summary["sent"] > 0


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.widget", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--customers", type=int, default=100, help="concurrent widget sessions")
    parser.add_argument("--messages", type=int, default=3, help="messages per customer")
    parser.add_argument(
        "--think-ms", type=float, default=500.0, help="pause after an answer, before the next"
    )
    parser.add_argument("--replicas", type=int, default=2, help="instances of each service")
    parser.add_argument(
        "--token-delay-ms", type=float, default=0.0, help="the stand-in model's ms per word"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="s from a POST until its answer is lost"
    )
    parser.add_argument(
        "--default-limits",
        action="store_true",
        help="keep CUSTOMER_RATE_LIMIT and WIDGET_CHANNEL_RATE_LIMIT at their defaults",
    )
    args = parser.parse_args(argv)
    for name in ("customers", "messages", "replicas"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("think_ms", "token_delay_ms"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    if args.timeout <= 0:
        parser.error("--timeout must be above 0")
    return Config(
        customers=args.customers,
        messages=args.messages,
        think_s=args.think_ms / 1000,
        replicas=args.replicas,
        token_delay_s=args.token_delay_ms / 1000,
        timeout_s=args.timeout,
        default_limits=args.default_limits,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    rows = load_messages()
    texts = [row["text"] for row in rows if not hands_off_first(row["text"])]
    machine = {"cores": str(os.cpu_count()), "before": load_average()}
    env = {"CUSTOMER_TOKEN_TTL_S": str(ACCESS_LIFETIME_S)}
    if not config.default_limits:
        env.update(RAISED_LIMITS)
    print(f"{config.replicas} replica(s) of each service", file=sys.stderr)
    try:
        with stand_in_stack(
            "bench-widget-",
            token_delay_s=config.token_delay_s,
            env=env,
            replicas=config.replicas,
        ) as stack:
            print(
                f"{config.customers} customers, {config.messages} messages each; "
                f"{len(rows) - len(texts)} of {len(rows)} seed messages left out (handed to a "
                "person whatever the model writes)",
                file=sys.stderr,
            )
            summary = asyncio.run(WidgetLoad(stack, config, texts).run())
            machine["after"] = load_average()
    except StartError as exc:
        print(f"widget bench: {exc}", file=sys.stderr)
        return 2
    print(report(summary, config, machine))
    return 0 if succeeded(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
