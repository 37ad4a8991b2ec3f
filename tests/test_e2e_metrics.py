"""Prometheus metrics of the whole stack: each service's ``/metrics`` on its own port, scraped
before and after real traffic, summed over the two replicas of each service; the sidecars'
``dapr_*`` metrics beside them; and nothing of it on the gateway's public port."""

import asyncio
import json
import time

import httpx2 as httpx
import pytest
import websockets
from devstack.client import E2E_TIMEOUT_S, wait_for
from devstack.delivery import PatientCustomer, replicas, wait_exactly_once
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]

Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    """Every sample of one metrics endpoint: (name, labels, value)."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        v
        for n, have, v in samples
        if n == name and all(have.get(k) == x for k, x in labels.items())
    )


class Snapshot:
    """One scrape of every instance of the stack."""

    def __init__(self, stack) -> None:
        self.by_instance = {
            name: scrape(service.metrics_url) for name, service in stack.services.items()
        }
        self.app_of = {name: service.app_id for name, service in stack.services.items()}

    def instance(self, name: str, metric: str, **labels: str) -> float:
        return value(self.by_instance[name], metric, **labels)

    def total(self, app_id: str, metric: str, **labels: str) -> float:
        """Summed over the replicas of ``app_id``."""
        return sum(
            value(samples, metric, **labels)
            for name, samples in self.by_instance.items()
            if self.app_of[name] == app_id
        )

    def highest(self, app_id: str, metric: str, **labels: str) -> float:
        """The largest over the replicas (for gauges every replica measures alike)."""
        return max(
            value(samples, metric, **labels)
            for name, samples in self.by_instance.items()
            if self.app_of[name] == app_id
        )


class Counters:
    """Counters watched by a test: ``"app-id metric{labels}"`` -> (app-id, metric, labels),
    each read as the sum over the app's replicas."""

    def __init__(self) -> None:
        self.watched: dict[str, tuple[str, str, dict[str, str]]] = {}

    def key(self, app: str, metric: str, **labels: str) -> str:
        key = f"{app} {metric}{json.dumps(labels, sort_keys=True)}"
        self.watched[key] = (app, metric, labels)
        return key

    def read(self, snapshot: Snapshot) -> dict[str, float]:
        return {
            key: snapshot.total(app, metric, **labels)
            for key, (app, metric, labels) in self.watched.items()
        }


def settled(stack, counters: Counters) -> Snapshot:
    """A snapshot taken once the watched counters stop moving and the outbox is drained, so
    that the deltas measured from it belong to this test alone."""
    last: list = [None]

    def still() -> Snapshot | None:
        snapshot = Snapshot(stack)
        now = counters.read(snapshot)
        drained = snapshot.highest("messaging", "inbox_outbox_unpublished_rows") == 0
        quiet = now == last[0] and drained
        last[0] = now
        return snapshot if quiet else None

    return wait_for(still, E2E_TIMEOUT_S, "metrics to settle", interval_s=1.0)


def test_counters_follow_messages_through_the_pipeline(stack, inbox) -> None:
    c = Counters()
    deliveries = "inbox_subscription_deliveries_total"
    redeliveries = "inbox_redeliveries_total"
    inbound = {"method": "POST", "route": "/api/v1/inbound/messages", "status": "202"}
    delivered = {"method": "POST", "route": "/events/messages.submitted", "status": "200"}
    # exactly what 4 customer messages (1 of them garbage to the model) and 1 reply must add
    expected = {
        c.key("gateway", "inbox_messages_received_total", author_role="customer"): 4,
        c.key("gateway", "inbox_messages_received_total", author_role="operator"): 1,
        c.key("gateway", "inbox_http_requests_total", **inbound): 4,
        c.key("gateway", "inbox_http_request_duration_seconds_count", **inbound): 4,
        # broadcast: each of the 2 gateways gets every change (2 per customer message, 1 reply)
        c.key("gateway", deliveries, topic="conversation.updated", result="SUCCESS"): 2 * 9,
        c.key("messaging", "inbox_messages_stored_total", author_role="customer"): 4,
        c.key("messaging", "inbox_messages_stored_total", author_role="operator"): 1,
        c.key("messaging", deliveries, topic="messages.submitted", result="DROP"): 0,
        c.key("ai-worker", "inbox_messages_analysed_total", status="available"): 3,
        c.key("ai-worker", "inbox_messages_analysed_total", status="unavailable"): 1,
        c.key("ai-worker", "inbox_ai_analysis_duration_seconds_count", status="available"): 3,
        c.key("ai-worker", "inbox_ai_analysis_duration_seconds_count", status="unavailable"): 1,
    }
    # work shared by the replicas: a redelivery adds a delivery and a redelivery, nothing else
    submitted = c.key("messaging", deliveries, topic="messages.submitted", result="SUCCESS")
    submitted_http = c.key("messaging", "inbox_http_requests_total", **delivered)
    submitted_again = c.key("messaging", redeliveries, kind="message")
    completed = c.key("messaging", deliveries, topic="ai.completed", result="SUCCESS")
    completed_again = c.key("messaging", redeliveries, kind="insight")
    created = c.key("ai-worker", deliveries, topic="message.created", result="SUCCESS")
    created_again = c.key("ai-worker", redeliveries, kind="cached_insight")
    available_sum = c.key("ai-worker", "inbox_ai_analysis_duration_seconds_sum", status="available")

    before = c.read(settled(stack, c))
    dapr_before = {
        name: scrape(service.sidecar_metrics_url) for name, service in stack.services.items()
    }

    sent = [inbox.send_customer(f"Where is my card? (metrics test, message {i})") for i in range(3)]
    sent.append(inbox.send_customer("[[fake:garbage]] Why was I charged twice?"))
    for accepted in sent:
        inbox.wait_insight(accepted["conversation_id"], accepted["message_id"])
    inbox.reply(sent[0]["conversation_id"], "Your card is on its way.")

    def moved() -> bool:
        now = c.read(Snapshot(stack))
        return all(now[k] - before[k] >= n for k, n in expected.items())

    wait_for(moved, E2E_TIMEOUT_S, "counters to reach the traffic sent", interval_s=0.5)
    after = settled(stack, c)
    change = {k: v - before[k] for k, v in c.read(after).items()}
    assert {k: change[k] for k in expected} == expected, change

    # every delivery was new work or a recognised repeat; the sidecar posts them in bulk,
    # so one HTTP call carries one or more
    assert change[submitted] == 5 + change[submitted_again]
    assert 0 < change[submitted_http] <= change[submitted]
    assert change[completed] == 4 + change[completed_again]
    # message.created goes to the ai-worker for customer messages only
    assert change[created] == 4 + change[created_again]
    # latencies are in seconds: 3 analyses within the tests' 5 s LLM timeout each
    assert 0 < change[available_sum] < 3 * 5

    # the outbox is drained, and says so
    assert after.highest("messaging", "inbox_outbox_unpublished_rows") == 0
    assert after.highest("messaging", "inbox_outbox_oldest_unpublished_age_seconds") == 0
    # the rate-limit counter is exported for every scope, from the start
    for scope in ("operator", "channel", "websocket"):
        assert [
            n
            for n, labels, _ in after.by_instance["gateway"]
            if n == "inbox_rate_limit_rejections_total" and labels == {"scope": scope}
        ] == ["inbox_rate_limit_rejections_total"]

    # the sidecars count the same traffic in their own metrics, under Dapr's names
    def dapr(name: str, metric: str, **labels: str) -> float:
        now = value(scrape(stack.services[name].sidecar_metrics_url), metric, **labels)
        return now - value(dapr_before[name], metric, **labels)

    # (Prometheus stores these as dapr_component_pubsub_{ingress,egress}_count; the client's
    # parser adds _total to every counter sample). messages.submitted is a bulk subscription,
    # whose events the sidecar counts under pubsub_ingress_bulk_event_count (with the status
    # as the app answered it, and daprd 1.18 naming the component "pubsubName").
    topic = {"topic": "messages.submitted"}
    ingress = sum(
        dapr(
            s.name,
            "dapr_component_pubsub_ingress_bulk_event_count_total",
            **topic,
            process_status="SUCCESS",
        )
        for s in replicas(stack, "messaging")
    )
    egress = sum(
        dapr(s.name, "dapr_component_pubsub_egress_count_total", **topic, success="true")
        for s in replicas(stack, "gateway")
    )
    assert egress == 5
    assert ingress == change[submitted]


def test_the_inbox_list_is_rebuilt_at_most_once_per_interval(stack, inbox, db) -> None:
    """A burst of 40 customer messages (some 120 changes with their insights): each messaging
    replica rebuilds the inbox list at most once per INBOX_INTERVAL_S (0.25 s), and the last
    changes still reach the list once the burst is over."""
    rebuilds = "inbox_inbox_list_rebuilds_total"
    before = Snapshot(stack).total("messaging", rebuilds)
    started = time.monotonic()
    customer = PatientCustomer(stack, count=40, per_second=40).start()
    customer.wait_sent()
    wait_exactly_once(db, customer.ids)
    conversations = {
        str(row[0])
        for row in db.execute(
            "SELECT conversation_id FROM messages WHERE message_id = ANY(%s)", (customer.ids,)
        ).fetchall()
    }

    def listed_with_insights() -> bool:
        page = inbox.http.get(
            "/api/v1/conversations", params={"limit": 200}, headers=inbox.auth
        ).json()
        rows = {i["conversation_id"]: i for i in page["items"]}
        return all(
            cid in rows and rows[cid]["latest_insight_status"] == "available"
            for cid in conversations
        )

    wait_for(listed_with_insights, E2E_TIMEOUT_S, "the burst in the inbox list, with insights")
    elapsed_s = time.monotonic() - started
    made = Snapshot(stack).total("messaging", rebuilds) - before
    bound = len(replicas(stack, "messaging")) * (elapsed_s / 0.25 + 1)
    assert 1 <= made <= bound, (made, bound, elapsed_s)


def test_open_sockets_follow_a_websocket(stack, inbox) -> None:
    gateway = stack.services["gateway"]  # the replica the test client talks to

    def gauge() -> float:
        return Snapshot(stack).total("gateway", "inbox_websocket_open_connections")

    def pushed() -> float:
        return value(scrape(gateway.metrics_url), "inbox_websocket_pushes_total")

    def opened() -> float:
        return Snapshot(stack).total("gateway", "inbox_websocket_connections_opened_total")

    open_before, opened_before, pushed_before = gauge(), opened(), pushed()

    async def scenario() -> int:
        async with websockets.connect(inbox.ws_url, subprotocols=inbox.ws_subprotocols) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await asyncio.to_thread(
                wait_for, lambda: gauge() == open_before + 1, E2E_TIMEOUT_S, "gauge up"
            )
            accepted = await asyncio.to_thread(inbox.send_customer, "How do I activate my card?")
            frames = 0
            async with asyncio.timeout(E2E_TIMEOUT_S):
                while True:
                    push = json.loads(await ws.recv())
                    frames += push["type"] != "pong"
                    if (
                        push["type"] == "conversation.updated"
                        and push["conversation_id"] == accepted["conversation_id"]
                        and push["conversation"]["latest_insight_status"] == "available"
                    ):
                        return frames

    frames = asyncio.run(scenario())
    wait_for(lambda: gauge() == open_before, E2E_TIMEOUT_S, "the open-sockets gauge back down")
    assert opened() == opened_before + 1
    assert frames >= 2  # message stored, insight available
    assert pushed() - pushed_before >= frames


def test_metrics_are_not_on_the_public_port(stack) -> None:
    for service in stack.services.values():
        assert service.ports.app_metrics != service.ports.app
        metrics = httpx.get(service.metrics_url, timeout=10)
        assert "# TYPE inbox_http_requests_total counter" in metrics.text
        for path in ("/metrics", "/metrics/"):
            public = httpx.get(service.url + path, timeout=10)
            assert public.status_code == 404 or public.headers["content-type"].startswith(
                "text/html"
            ), (service.name, path, public.status_code)
            assert "inbox_" not in public.text and "# TYPE" not in public.text, service.name
