"""The whole stack through its public API: three services, three daprd, Redis, PostgreSQL,
and a fake Ollama server speaking Ollama's HTTP API."""

import asyncio
import json
import uuid

import pytest
import websockets
from devstack.client import E2E_TIMEOUT_S, wait_for
from devstack.delivery import wait_exactly_once
from devstack.seed import load_messages, post_customer_message

pytestmark = pytest.mark.e2e


def test_customer_message_is_stored_then_enriched(inbox) -> None:
    accepted = inbox.send_customer("I'm still waiting for my new card.")
    conversation = wait_for(
        lambda: inbox.conversation(accepted["conversation_id"]), what="conversation read model"
    )
    (message,) = conversation["messages"]
    assert message["message_id"] == accepted["message_id"]
    assert message["author_role"] == "customer"
    insight = inbox.wait_insight(accepted["conversation_id"], accepted["message_id"])
    assert insight["status"] == "available"
    assert insight["intent"] == "card_arrival"  # the data set's human label
    assert insight["summary"] and insight["suggested_reply"]
    assert insight["model"] == "fake-insight:1b"


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("valid", "available", None),
        ("fenced", "available", None),
        ("prose", "unavailable", "no JSON object"),
        ("garbage", "unavailable", "no JSON object"),
        ("slow", "unavailable", "did not answer within 5 s"),
        ("error", "unavailable", "HTTP 500"),
    ],
)
def test_every_model_behaviour_ends_in_a_final_status(inbox, mode, status, reason) -> None:
    accepted = inbox.send_customer(f"[[fake:{mode}]] How do I top up by card?")
    insight = inbox.wait_insight(accepted["conversation_id"], accepted["message_id"])
    assert insight["status"] == status
    if reason:
        assert reason in insight["error"]
        assert insight["suggested_reply"] is None
    else:
        assert insight["intent"] and insight["suggested_reply"]


def test_insight_is_pushed_over_the_websocket(inbox) -> None:
    async def scenario() -> list[dict]:
        async with websockets.connect(inbox.ws_url, subprotocols=inbox.ws_subprotocols) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello"
            assert hello["operator"]["username"] == "demo"
            accepted = await asyncio.to_thread(
                inbox.send_customer, "How can I receive a virtual card?"
            )
            pushes: list[dict] = []
            async with asyncio.timeout(E2E_TIMEOUT_S):
                while True:
                    push = json.loads(await ws.recv())
                    if push.get("conversation_id") != accepted["conversation_id"]:
                        continue
                    if push["type"] == "insight.delta":  # the reply being written
                        continue
                    pushes.append(push)
                    if push["conversation"]["latest_insight_status"] == "available":
                        return pushes

    pushes = asyncio.run(scenario())
    assert pushes[0]["type"] == "conversation.updated"
    assert pushes[-1]["conversation"]["latest_intent"] == "getting_virtual_card"
    versions = [p["version"] for p in pushes]
    assert versions == sorted(versions)


def test_operator_reply_joins_the_conversation(inbox) -> None:
    accepted = inbox.send_customer("My transfer has not arrived yet.")
    wait_for(lambda: inbox.conversation(accepted["conversation_id"]), what="conversation")
    reply_id = str(uuid.uuid4())
    for _ in range(2):  # a retried request with the same message_id is stored once
        response = inbox.http.post(
            f"/api/v1/conversations/{accepted['conversation_id']}/messages",
            json={"message_id": reply_id, "body": "Let me check that transfer for you."},
            headers=inbox.auth,
        )
        assert response.status_code == 202, response.text

    def replied() -> dict | None:
        conversation = inbox.conversation(accepted["conversation_id"])
        return conversation if len(conversation["messages"]) == 2 else None

    conversation = wait_for(replied, what="operator reply")
    operator_message = conversation["messages"][1]
    assert operator_message["message_id"] == reply_id
    assert operator_message["author_role"] == "operator"
    assert operator_message["author_id"] == "demo"
    assert operator_message["seq"] == 2
    assert operator_message["insight"] is None  # only customer messages are analysed
    assert conversation["summary"]["awaiting_reply"] is False


def test_two_hundred_real_messages_none_lost_none_duplicated(inbox, db) -> None:
    rows = load_messages()[:200]
    run = uuid.uuid4()
    ids = [uuid.uuid5(run, row["id"]) for row in rows]
    for row, message_id in zip(rows, ids, strict=True):
        post_customer_message(inbox.stack.gateway_url, inbox.stack.channel_key, row, message_id)
    # a redelivered request changes nothing
    for row, message_id in list(zip(rows, ids, strict=True))[:20]:
        post_customer_message(inbox.stack.gateway_url, inbox.stack.channel_key, row, message_id)

    assert wait_exactly_once(db, ids) == {"available": 200}
    labels = {str(i): row["intent"].lower() for row, i in zip(rows, ids, strict=True)}
    intents = dict(
        db.execute(
            "SELECT message_id::text, intent FROM ai_insights WHERE message_id = ANY(%s)", (ids,)
        ).fetchall()
    )
    assert intents == labels
    unpublished = db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]
    wait_for(
        lambda: db.execute("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL").fetchone()[
            0
        ],
        what=f"outbox drained ({unpublished} left)",
    )


def test_a_full_model_queue_is_retried_and_nothing_is_lost(inbox, fake_ollama) -> None:
    """Ollama answers 503 "server busy" while ``OLLAMA_MAX_QUEUE`` requests wait (the real
    server's answer: ``test_integration_ollama_real.py``); the worker retries, and each
    message gets its insight."""
    bodies = [f"[[fake:busy]] {n} My transfer has not arrived yet." for n in range(3)]
    accepted = [inbox.send_customer(body) for body in bodies]
    insights = [inbox.wait_insight(a["conversation_id"], a["message_id"]) for a in accepted]
    assert [i["status"] for i in insights] == ["available"] * 3, [i["error"] for i in insights]
    refusals = fake_ollama.stats()["busy_refusals"]
    assert [refusals.get(body) for body in bodies] == [2, 2, 2]
