"""The Hub: fan-out without blocking, a slow socket closed, and the WebSocket metrics."""

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
