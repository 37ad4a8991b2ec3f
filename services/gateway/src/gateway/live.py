"""Fan-out of conversation updates to the operators' WebSockets connected to this replica.

The Hub also keeps the WebSocket metrics (:mod:`inbox_common.metrics`): sockets opened and open,
events pushed, and sockets closed as slow consumers with the events they lost.
"""

import asyncio
import logging
from dataclasses import dataclass, field

from inbox_common import metrics
from starlette.websockets import WebSocket

from gateway.core.security import Operator

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER = 1013
"""RFC 6455 "Try Again Later": the client fell too far behind; it reconnects and refetches."""


@dataclass(eq=False)
class Connection:
    socket: WebSocket
    operator: Operator
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


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

    def add(self, socket: WebSocket, operator: Operator) -> Connection:
        connection = Connection(socket, operator, asyncio.Queue(self._queue_size))
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
        for connection in list(self._connections):
            try:
                connection.queue.put_nowait(payload)
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
