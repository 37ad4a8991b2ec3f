"""Two replicas of every service, each beside its own daprd, on every broker of the matrix:
broadcast to every gateway, shared work for messaging and the ai-worker, one outbox relay."""

import asyncio
import json

import httpx2 as httpx
import pytest
import websockets
from devstack.client import E2E_TIMEOUT_S, wait_for, ws_subprotocols
from devstack.delivery import PatientCustomer, replicas, sidecar_metric, wait_exactly_once

pytestmark = pytest.mark.e2e


def test_every_gateway_replica_pushes_a_change_made_through_another(stack, inbox) -> None:
    """An operator on replica B sees a message that came in through replica A, and the other
    way round."""
    gateways = replicas(stack, "gateway")
    assert len(gateways) == 2
    urls = [g.url.replace("http://", "ws://") + "/ws" for g in gateways]

    async def scenario() -> dict[str, set[int]]:
        sockets = [
            await websockets.connect(url, subprotocols=ws_subprotocols(inbox.token))
            for url in urls
        ]
        try:
            for ws in sockets:
                assert json.loads(await ws.recv())["type"] == "hello"
            wanted = set()
            for gateway in gateways:  # one message in through each replica
                response = await asyncio.to_thread(
                    httpx.post,
                    f"{gateway.url}/api/v1/inbound/messages",
                    json={"customer_id": "cust-broadcast", "body": "My card has not arrived."},
                    headers={"X-API-Key": stack.channel_key},
                )
                assert response.status_code == 202, response.text
                wanted.add(response.json()["conversation_id"])
            seen: dict[str, set[str]] = {}
            for index, ws in enumerate(sockets):
                got = seen.setdefault(f"replica-{index + 1}", set())
                async with asyncio.timeout(E2E_TIMEOUT_S):
                    while got != wanted:
                        push = json.loads(await ws.recv())
                        if push.get("conversation_id") in wanted:
                            got.add(push["conversation_id"])
            return seen
        finally:
            for ws in sockets:
                await ws.close()

    seen = asyncio.run(scenario())
    assert len(seen) == 2 and all(len(ids) == 2 for ids in seen.values())


def test_a_reply_being_written_reaches_every_gateway_replica(stack, inbox) -> None:
    """The partial reply travels as batched ``insight.delta`` events on the broadcast
    component: an operator on each replica sees it grow, then the final insight."""
    gateways = replicas(stack, "gateway")
    urls = [g.url.replace("http://", "ws://") + "/ws" for g in gateways]

    async def watch(url: str, started: asyncio.Event, conversation: list[str]) -> dict:
        async with websockets.connect(url, subprotocols=ws_subprotocols(inbox.token)) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            started.set()
            texts, final = [], None
            async with asyncio.timeout(E2E_TIMEOUT_S):
                while final is None:
                    push = json.loads(await ws.recv())
                    if not conversation or push.get("conversation_id") != conversation[0]:
                        continue
                    if push["type"] == "insight.delta":
                        texts.append(push["text"])
                    elif push["conversation"]["latest_insight_status"] == "available":
                        final = push
            return {"texts": texts, "final": final}

    async def scenario() -> list[dict]:
        conversation: list[str] = []
        ready = [asyncio.Event() for _ in urls]
        watchers = [
            asyncio.create_task(watch(url, event, conversation))
            for url, event in zip(urls, ready, strict=True)
        ]
        await asyncio.gather(*(event.wait() for event in ready))
        accepted = await asyncio.to_thread(
            inbox.send_customer, "[[fake:stream]] Why is my card payment still pending?"
        )
        conversation.append(accepted["conversation_id"])
        return await asyncio.gather(*watchers)

    seen = asyncio.run(scenario())
    assert len(seen) == 2
    conversation_id = seen[0]["final"]["conversation_id"]
    (message,) = inbox.conversation(conversation_id)["messages"]
    reply = message["insight"]["suggested_reply"]
    for replica in seen:
        texts = replica["texts"]
        assert len(texts) >= 3, texts  # it grew in front of each operator...
        assert all(reply.startswith(t) for t in texts)
        assert len(texts) < len(reply.split())  # ...in batches, not one event per word


def test_replicas_share_the_work_and_analyse_each_message_once(
    stack, db, fake_ollama, broker
) -> None:
    """In normal operation: each message stored once, analysed by one LLM call, and both
    replicas of messaging and of the ai-worker took deliveries."""

    def deliveries(app_id: str, topic: str, metric: str) -> list[float]:
        return [sidecar_metric(s, metric, topic=topic) for s in replicas(stack, app_id)]

    # messages.submitted is a bulk subscription: its sidecar counts events under another name
    counted = {
        "messaging": ("messages.submitted", "dapr_component_pubsub_ingress_bulk_event_count"),
        "ai-worker": ("message.created", "dapr_component_pubsub_ingress_count"),
    }
    before = {app_id: deliveries(app_id, *what) for app_id, what in counted.items()}
    customer = PatientCustomer(stack, count=40, per_second=20).start()
    customer.wait_sent()
    statuses = wait_exactly_once(db, customer.ids)
    assert statuses == {"available": 40}
    calls = fake_ollama.stats()["texts"]
    assert [calls.get(text) for text in customer.texts] == [1] * 40
    after = {app_id: deliveries(app_id, *what) for app_id, what in counted.items()}
    for app_id in after:
        taken = [a - b for a, b in zip(after[app_id], before[app_id], strict=True)]
        assert sum(taken) >= 40, (app_id, taken)
        assert all(n > 0 for n in taken), f"{app_id} replicas on {broker} took {taken}"


def test_outbox_relay_publishes_each_row_once_with_two_messaging_replicas(stack, db) -> None:
    """Both messaging replicas run the relay; the advisory lock lets one publish a batch at a
    time, so the sidecars' publish count equals the outbox rows written (no storm), and no
    row is left behind."""

    def drained() -> bool:
        return db.execute("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL").fetchone()[
            0
        ]

    wait_for(drained, what="outbox drained before the test")

    def published() -> float:
        return sum(
            sidecar_metric(s, "dapr_component_pubsub_egress_count", success="true")
            for s in replicas(stack, "messaging")
        )

    rows_before = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
    published_before = published()
    customer = PatientCustomer(stack, count=30, per_second=30).start()
    customer.wait_sent()
    wait_exactly_once(db, customer.ids)
    wait_for(drained, what="outbox drained")
    rows = db.execute("SELECT count(*) FROM outbox WHERE id > %s", (rows_before,)).fetchone()[0]
    # message.created + conversation.updated per message, conversation.updated per insight
    assert rows == 30 * 3
    wait_for(lambda: published() - published_before >= rows, what="publishes counted")
    assert published() - published_before == rows
    attempts = db.execute(
        "SELECT max(attempts) FROM outbox WHERE id > %s", (rows_before,)
    ).fetchone()[0]
    assert attempts == 1
