"""Fan-out of conversation updates to the WebSockets connected to this replica: every
operator's (:class:`Hub`), and each customer's for its own conversation (:class:`CustomerHub`).

A push is serialised once, whatever the number of sockets it goes to: the queues hold the
JSON text of each event (:func:`frame`). A socket on the batched subprotocol (``inbox.v2``)
gets what queued for it as one frame, a JSON array (:func:`encode`), and its writer waits
:data:`BATCH_INTERVAL_S` after each frame: under a burst it sends a few frames a second
instead of one per event, and an event after a quiet spell still goes at once.

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


BATCH_INTERVAL_S = 0.05
"""Shortest time between two frames to a socket on the batched subprotocol, in seconds."""
BATCH_MAX_EVENTS = 100
"""Most events in one batched frame."""


def frame(payload: dict) -> str:
    """``payload`` as the text of one WebSocket frame: compact JSON, UTF-8 as is (what
    Starlette's ``send_json`` sends)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def encode(texts: list[str], batched: bool) -> list[str]:
    """The frames that carry the events ``texts`` (each :func:`frame` text): one JSON array
    for a batched socket, else one frame each."""
    return ["[" + ",".join(texts) + "]"] if batched else texts


@dataclass(eq=False)
class Connection:
    socket: WebSocket
    operator: Operator
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    batched: bool = False


class Hub:
    """Connections of this replica; :meth:`broadcast` never blocks on a slow client.

    Each connection has a bounded queue drained by its own writer; a client whose queue is
    full is closed with 1013 rather than slowing everyone down or growing memory.
    """

    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._connections: set[Connection] = set()

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
        """Queue ``payload`` for every connection; returns how many got it."""
        delivered = 0
        text = frame(payload)
        for connection in list(self._connections):
            try:
                connection.queue.put_nowait(text)
                delivered += 1
            except asyncio.QueueFull:
                log.warning(
                    "closing slow WebSocket", extra={"operator": connection.operator.username}
                )
                self.remove(connection)
                dropped = 1  # this payload
                while not connection.queue.empty():
                    dropped += connection.queue.get_nowait() is not None
                connection.queue.put_nowait(None)  # tells its writer to close with 1013
                metrics.WEBSOCKET_SLOW_CONSUMER_CLOSES.inc()
                metrics.WEBSOCKET_PUSHES_DROPPED.inc(dropped)
        if delivered:
            metrics.WEBSOCKET_PUSHES.labels(str(payload.get("type", "other"))).inc(delivered)
        return delivered


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
                connection.queue.put_nowait(text)
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
