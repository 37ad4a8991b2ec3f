"""The metrics module: names by the Prometheus conventions, its own port, HTTP requests by
route template, subscription answers by topic and result."""

import socket
import urllib.error
import urllib.request
from uuid import uuid4

import pytest
from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI
from fastapi.testclient import TestClient
from inbox_common import metrics
from inbox_common.errors import PoisonError
from inbox_common.events import ConversationUpdated
from inbox_common.subscriptions import subscribe
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def inbox_families() -> dict[str, object]:
    text = generate_latest(REGISTRY).decode()
    return {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("inbox_")}


def test_names_follow_the_prometheus_conventions() -> None:
    families = inbox_families()
    assert set(families) >= {
        "inbox_http_requests",
        "inbox_http_request_duration_seconds",
        "inbox_websocket_connections_opened",
        "inbox_websocket_open_connections",
        "inbox_websocket_pushes",
        "inbox_websocket_slow_consumer_closes",
        "inbox_websocket_pushes_dropped",
        "inbox_messages_received",
        "inbox_messages_stored",
        "inbox_messages_analysed",
        "inbox_ai_analysis_duration_seconds",
        "inbox_llm_tokens",
        "inbox_outbox_unpublished_rows",
        "inbox_outbox_oldest_unpublished_age_seconds",
        "inbox_subscription_deliveries",
        "inbox_redeliveries",
        "inbox_rate_limit_rejections",
    }
    for name, family in families.items():
        if family.type == "counter":  # the parser strips _total; the samples carry it
            assert all(s.name.startswith(f"{name}_total") for s in family.samples), name
        if family.type == "histogram":
            assert name.endswith("_seconds"), name
        assert not any(label.endswith("_id") for s in family.samples for label in s.labels)
    # known label values are exported at 0 from the start
    for scope in ("operator", "channel", "websocket"):
        assert REGISTRY.get_sample_value("inbox_rate_limit_rejections_total", {"scope": scope}) == 0


def test_serve_answers_on_its_own_port_and_stops() -> None:
    port = free_port()
    with metrics.serve(port, "127.0.0.1") as served:
        assert served == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE inbox_messages_received_total counter" in body
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_port_zero_serves_nothing() -> None:
    with metrics.serve(0) as served:
        assert served is None


def test_a_busy_port_names_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"METRICS_PORT={port}"), metrics.serve(port, "127.0.0.1"):
            pass


def test_http_requests_are_counted_by_route_template() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    metrics.instrument_http(app)
    route = {"method": "GET", "route": "/items/{item_id}", "status": "200"}
    unknown = {"method": "GET", "route": "none", "status": "404"}
    before = (
        sample("inbox_http_requests_total", **route),
        sample("inbox_http_request_duration_seconds_count", **route),
        sample("inbox_http_requests_total", **unknown),
    )
    with TestClient(app) as client:
        for item_id in (1, 2, 3):
            assert client.get(f"/items/{item_id}").status_code == 200
        assert client.get("/nowhere/7").status_code == 404
        assert client.get("/healthz").status_code == 200
    assert sample("inbox_http_requests_total", **route) == before[0] + 3
    assert sample("inbox_http_request_duration_seconds_count", **route) == before[1] + 3
    assert sample("inbox_http_requests_total", **unknown) == before[2] + 1
    assert not sample("inbox_http_requests_total", method="GET", route="/healthz", status="200")
    assert not sample("inbox_http_requests_total", method="GET", route="/items/1", status="200")


def test_subscription_answers_are_counted_by_topic_and_result() -> None:
    topic = "conversation.updated"

    async def handler(event: ConversationUpdated) -> None:
        if event.version == 13:
            raise PoisonError("unlucky")

    app = FastAPI()
    subscribe(DaprApp(app), topic, ConversationUpdated, handler)

    def counts() -> dict[str, float]:
        return {
            r: sample("inbox_subscription_deliveries_total", topic=topic, result=r)
            for r in ("SUCCESS", "RETRY", "DROP")
        }

    before = counts()
    with TestClient(app) as client:
        for version in (1, 13, 2):
            data = {"conversation_id": str(uuid4()), "version": version, "reason": "ai.completed"}
            client.post(f"/events/{topic}", json={"id": str(uuid4()), "data": data})
        client.post(f"/events/{topic}", content=b"not json")
    after = counts()
    assert {r: after[r] - before[r] for r in after} == {"SUCCESS": 2, "RETRY": 0, "DROP": 2}
