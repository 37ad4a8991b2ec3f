"""The Hub: fan-out without blocking, a slow socket closed, and the WebSocket metrics."""

import asyncio

from gateway.api.routes.ws import _write
from gateway.core.security import Operator
from gateway.live import Hub
from prometheus_client import REGISTRY


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[str, float]:
    return {
        "opened": value("inbox_websocket_connections_opened_total"),
        "open": value("inbox_websocket_open_connections"),
        "pushed": value("inbox_websocket_pushes_total", type="conversation.updated"),
        "slow": value("inbox_websocket_slow_consumer_closes_total"),
        "dropped": value("inbox_websocket_pushes_dropped_total"),
    }


def delta(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in snapshot().items()}


def test_hub_counts_sockets_pushes_and_slow_consumers() -> None:
    hub = Hub(queue_size=2)
    alice, bob = Operator("alice", "Alice"), Operator("bob", "Bob")
    before = snapshot()
    fast = hub.add(object(), alice)  # type: ignore[arg-type]
    slow = hub.add(object(), bob)  # type: ignore[arg-type]
    assert delta(before) == {"opened": 2, "open": 2, "pushed": 0, "slow": 0, "dropped": 0}

    update = {"type": "conversation.updated", "version": 1}
    assert hub.broadcast(update) == 2
    fast.queue.get_nowait()
    assert hub.broadcast(update) == 2
    fast.queue.get_nowait()
    # bob's queue is full (2 queued): the third event closes his socket
    assert hub.broadcast(update) == 1
    assert slow.queue.get_nowait() is None  # his writer closes with 1013
    assert delta(before) == {"opened": 2, "open": 1, "pushed": 5, "slow": 1, "dropped": 3}

    hub.remove(slow)  # the socket's own clean-up after the slow close: not counted twice
    hub.remove(fast)
    assert len(hub) == 0
    assert delta(before) == {"opened": 2, "open": 0, "pushed": 5, "slow": 1, "dropped": 3}


def test_a_push_is_serialised_once_for_all_sockets() -> None:
    hub = Hub()
    connections = [hub.add(object(), Operator(f"op{n}", "Op")) for n in range(3)]  # type: ignore[arg-type]
    hub.broadcast({"type": "conversation.updated", "text": "Grüße"})
    frames = [c.queue.get_nowait() for c in connections]
    assert frames[0] == '{"type":"conversation.updated","text":"Grüße"}'
    assert all(f is frames[0] for f in frames)
    for connection in connections:
        hub.remove(connection)


class Socket:
    """What the writer sends, with when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append((asyncio.get_running_loop().time(), text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = code


async def test_batched_sockets_share_one_frame_per_interval() -> None:
    hub = Hub(batch_interval_s=0.05, batch_socket_s=1.0)
    batched, single = Socket(), Socket()
    connections = [
        hub.add(batched, Operator("alice", "Alice"), batched=True),  # type: ignore[arg-type]
        hub.add(single, Operator("bob", "Bob")),  # type: ignore[arg-type]
    ]
    writers = [asyncio.create_task(_write(c)) for c in connections]
    before = snapshot()
    assert hub.broadcast({"type": "conversation.updated", "version": 1}) == 2
    await asyncio.sleep(0.01)  # the first event after a quiet spell goes at once
    for version in (2, 3, 4):
        hub.broadcast({"type": "conversation.updated", "version": version})
    await asyncio.sleep(0.1)
    assert [text for _, text in batched.sent] == [
        '[{"type":"conversation.updated","version":1}]',
        '[{"type":"conversation.updated","version":2},{"type":"conversation.updated","version":3},'
        '{"type":"conversation.updated","version":4}]',
    ]
    assert batched.sent[1][0] - batched.sent[0][0] >= 0.05 * 0.9
    assert [text for _, text in single.sent] == [
        f'{{"type":"conversation.updated","version":{v}}}' for v in (1, 2, 3, 4)
    ]
    assert delta(before)["pushed"] == 8
    for writer in writers:
        writer.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    for connection in connections:
        hub.remove(connection)


async def test_a_slow_batched_socket_is_closed_with_the_events_it_lost_counted() -> None:
    hub = Hub(queue_size=1, batch_interval_s=0.01, batch_socket_s=1.0)
    slow = hub.add(Socket(), Operator("carol", "Carol"), batched=True)  # type: ignore[arg-type]
    before = snapshot()
    hub.broadcast({"type": "conversation.updated", "version": 1})
    await asyncio.sleep(0.03)  # one frame of 1 event queued, nobody drains it
    hub.broadcast({"type": "conversation.updated", "version": 2})
    hub.broadcast({"type": "conversation.updated", "version": 3})
    await asyncio.sleep(0.03)  # a frame of 2 more does not fit
    assert slow.queue.get_nowait() is None
    assert delta(before) == {"opened": 0, "open": -1, "pushed": 3, "slow": 1, "dropped": 3}


async def test_the_batch_interval_grows_with_the_batched_sockets() -> None:
    hub = Hub(batch_interval_s=0.1, batch_socket_s=0.01)
    sockets = [Socket() for _ in range(3)]
    connections = [
        hub.add(s, Operator(f"op{n}", "Op"), batched=True)  # type: ignore[arg-type]
        for n, s in enumerate(sockets)
    ]
    loop = asyncio.get_running_loop()
    hub.broadcast({"type": "conversation.updated", "version": 1})
    await asyncio.sleep(0)
    first = loop.time()
    hub.broadcast({"type": "conversation.updated", "version": 2})
    frames = []
    while len(frames) < 2:
        frames.append((await connections[0].queue.get(), loop.time()))
    # 3 sockets x 10 ms: the second frame waits about 30 ms, not the 100 ms ceiling
    assert 0.025 <= frames[1][1] - first < 0.09, frames
    for connection in connections:
        hub.remove(connection)
