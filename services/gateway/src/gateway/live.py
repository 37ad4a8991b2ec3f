"""Fan-out of conversation updates to the WebSockets connected to this replica: every
operator's (:class:`Hub`), and each customer's for its own conversation (:class:`CustomerHub`).

A push is serialised once, whatever the number of sockets it goes to: the queues hold the
text of whole frames (:func:`frame`). A socket on the batched subprotocol (``inbox.v2``) gets
the events as JSON arrays: the Hub gathers what it broadcasts and sends it to all of them as
one frame, built once, at most every :data:`BATCH_SOCKET_S` per batched socket and never less
often than every :data:`BATCH_INTERVAL_S` (an event after a quiet spell goes at once). The
gateway thus sends at most some 10,000 frames a second, however many sockets are open: one
socket gets its events at once, 1,000 sockets get them every 100 ms. Under a burst, a socket
then costs a few frames a second, not one per event.

The Hub also keeps the WebSocket metrics (:mod:`inbox_common.metrics`): sockets opened and open,
events pushed, and sockets closed as slow consumers with the events they lost.
"""

import asyncio
import json
import logging
from dataclasses import dataclass, field
from uuid import UUID

from inbox_common import metrics
from starlette.websockets import WebSocket

from gateway.core.security import Operator

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER = 1013
"""RFC 6455 "Try Again Later": the client fell too far behind; it reconnects and refetches."""
BATCH_INTERVAL_S = 0.1
"""Longest wait between two batched frames, in seconds."""
BATCH_SOCKET_S = 0.0001
"""Wait between two batched frames per batched socket open, in seconds (up to
:data:`BATCH_INTERVAL_S`)."""
BATCH_MAX_EVENTS = 100
"""Most events in one batched frame."""


def frame(payload: dict) -> str:
    """``payload`` as the text of one WebSocket frame: compact JSON, UTF-8 as is (what
    Starlette's ``send_json`` sends)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class Batch(str):
    """A batched frame's text, knowing how many events it carries (``events``)."""

    events: int


def batch(texts: list[str]) -> Batch:
    """The events ``texts`` (each a :func:`frame` text) as one batched frame: a JSON array."""
    framed = Batch("[" + ",".join(texts) + "]")
    framed.events = len(texts)
    return framed


@dataclass(eq=False)
class Connection:
    socket: WebSocket
    operator: Operator
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    batched: bool = False


class Hub:
    """Connections of this replica; :meth:`broadcast` never blocks on a slow client.

    Each connection has a bounded queue of frames drained by its own writer; a client whose
    queue is full is closed with 1013 rather than slowing everyone down or growing memory.

    Args:
        queue_size: frames a socket may have waiting.
        batch_interval_s: longest wait between two batched frames (s).
        batch_socket_s: wait between two batched frames per batched socket (s).
    """

    def __init__(
        self,
        queue_size: int = 256,
        batch_interval_s: float = BATCH_INTERVAL_S,
        batch_socket_s: float = BATCH_SOCKET_S,
    ) -> None:
        self._queue_size = queue_size
        self._batch_interval_s = batch_interval_s
        self._batch_socket_s = batch_socket_s
        self._connections: set[Connection] = set()
        self._pending: list[str] = []
        self._flush: asyncio.Handle | None = None
        self._flushed_at = float("-inf")

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, socket: WebSocket, operator: Operator, batched: bool = False) -> Connection:
        connection = Connection(socket, operator, asyncio.Queue(self._queue_size), batched)
        self._connections.add(connection)
        metrics.WEBSOCKET_CONNECTIONS_OPENED.inc()
        metrics.WEBSOCKET_OPEN_CONNECTIONS.inc()
        return connection

    def remove(self, connection: Connection) -> None:
        """Forget ``connection``; removing it again (the writer after a slow close) is a no-op."""
        if connection in self._connections:
            self._connections.discard(connection)
            metrics.WEBSOCKET_OPEN_CONNECTIONS.dec()

    def broadcast(self, payload: dict) -> int:
        """Queue ``payload`` for every connection: at once in its own frame, or for the
        batched ones in the next batched frame (needs a running event loop then). Returns
        how many connections get it."""
        text = frame(payload)
        delivered = 0
        batched = False
        for connection in list(self._connections):
            if connection.batched:
                batched = True
                delivered += 1
            elif self._put(connection, text):
                delivered += 1
        if batched:
            self._pending.append(text)
            self._schedule()
        if delivered:
            metrics.WEBSOCKET_PUSHES.labels(str(payload.get("type", "other"))).inc(delivered)
        return delivered

    def _schedule(self) -> None:
        if self._flush is not None:
            return
        loop = asyncio.get_running_loop()
        batched = sum(1 for c in self._connections if c.batched)
        interval_s = min(self._batch_interval_s, batched * self._batch_socket_s)
        wait_s = self._flushed_at + interval_s - loop.time()
        self._flush = (
            loop.call_later(wait_s, self.flush) if wait_s > 0 else loop.call_soon(self.flush)
        )

    def flush(self) -> None:
        """Queue the events gathered for the batched connections, as frames of up to
        ``BATCH_MAX_EVENTS``, on each of them."""
        self._flush = None
        self._flushed_at = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, []
        frames = [
            batch(pending[i : i + BATCH_MAX_EVENTS])
            for i in range(0, len(pending), BATCH_MAX_EVENTS)
        ]
        for connection in list(self._connections):
            if connection.batched:
                for text in frames:
                    if not self._put(connection, text):
                        break

    def _put(self, connection: Connection, text: str) -> bool:
        """Queue one frame; a full queue closes the socket as a slow consumer (its writer
        sends 1013) and returns ``False``."""
        try:
            connection.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            pass
        log.warning("closing slow WebSocket", extra={"operator": connection.operator.username})
        self.remove(connection)
        dropped = _events(text)  # this frame
        while not connection.queue.empty():
            dropped += _events(connection.queue.get_nowait())
        connection.queue.put_nowait(None)  # tells its writer to close with 1013
        metrics.WEBSOCKET_SLOW_CONSUMER_CLOSES.inc()
        metrics.WEBSOCKET_PUSHES_DROPPED.inc(dropped)
        return False


def _events(text: str | None) -> int:
    """Events in one queued frame (``None``, the close signal, has none)."""
    if text is None:
        return 0
    return text.events if isinstance(text, Batch) else 1


@dataclass(eq=False)
class CustomerConnection:
    socket: WebSocket
    conversation_id: UUID
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    batched: bool = False


class CustomerHub:
    """The chat widget's sockets on this replica, by conversation: a change reaches only the
    sockets of its own conversation. A socket whose queue is full is closed with 1013 (it
    reconnects and reads the conversation again)."""

    def __init__(self, queue_size: int = 64) -> None:
        self._queue_size = queue_size
        self._by_conversation: dict[UUID, set[CustomerConnection]] = {}

    def watched(self, conversation_id: UUID) -> bool:
        """Whether a socket here shows ``conversation_id``."""
        return bool(self._by_conversation.get(conversation_id))

    def add(
        self, socket: WebSocket, conversation_id: UUID, batched: bool = False
    ) -> CustomerConnection:
        connection = CustomerConnection(
            socket, conversation_id, asyncio.Queue(self._queue_size), batched
        )
        self._by_conversation.setdefault(conversation_id, set()).add(connection)
        metrics.WEBSOCKET_CONNECTIONS_OPENED.inc()
        metrics.WEBSOCKET_OPEN_CONNECTIONS.inc()
        return connection

    def remove(self, connection: CustomerConnection) -> None:
        """Forget ``connection``; again is a no-op."""
        sockets = self._by_conversation.get(connection.conversation_id)
        if sockets and connection in sockets:
            sockets.discard(connection)
            if not sockets:
                del self._by_conversation[connection.conversation_id]
            metrics.WEBSOCKET_OPEN_CONNECTIONS.dec()

    def send(self, conversation_id: UUID, payload: dict) -> int:
        """Queue ``payload`` for the sockets of ``conversation_id``; returns how many got it."""
        delivered = 0
        sockets = list(self._by_conversation.get(conversation_id, ()))
        text = frame(payload) if sockets else ""
        for connection in sockets:
            try:
                connection.queue.put_nowait(batch([text]) if connection.batched else text)
                delivered += 1
            except asyncio.QueueFull:
                self.remove(connection)
                while not connection.queue.empty():
                    connection.queue.get_nowait()
                connection.queue.put_nowait(None)  # its writer closes with 1013
                metrics.WEBSOCKET_SLOW_CONSUMER_CLOSES.inc()
        if delivered:
            metrics.WEBSOCKET_PUSHES.labels(str(payload.get("type", "other"))).inc(delivered)
        return delivered
