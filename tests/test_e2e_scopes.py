"""Pub/sub scopes on real sidecars: each app's daprd publishes only the topics of
``inbox_common.scopes`` and refuses the rest with 403, while messages, insights and dead
letters still flow."""

import uuid

import httpx2 as httpx
import pytest
from devstack.client import publish_through, wait_for
from inbox_common.scopes import APPS, may_publish, may_subscribe

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("app", "topic"),
    [
        ("gateway", "message.created"),  # would skip messaging and feed the worker directly
        ("gateway", "ai.completed"),  # would forge an insight
        ("gateway", "conversation.updated"),  # broadcast: only messaging announces changes
        ("ai-worker", "messages.submitted"),
        ("messaging", "ai.completed"),
    ],
)
def test_a_publish_outside_the_apps_scope_is_refused(stack, app: str, topic: str) -> None:
    assert topic not in may_publish(app)
    response = publish_through(stack, app, topic, {"message_id": str(uuid.uuid4())})
    assert response.status_code == 403, response.text
    assert response.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN"


def test_each_sidecar_subscribes_exactly_its_scope(stack) -> None:
    for app in APPS:
        port = stack.services[app].ports.http
        metadata = httpx.get(
            f"http://127.0.0.1:{port}/v1.0/metadata",
            headers={"dapr-api-token": stack.dapr_api_token},
            timeout=10,
        ).json()
        topics = {s["topic"] for s in metadata.get("subscriptions") or []}
        assert topics == may_subscribe(app), app


def test_messages_insights_and_dead_letters_still_flow(stack, inbox, db) -> None:
    accepted = inbox.send_customer("My card payment was declined twice today.")
    insight = inbox.wait_insight(accepted["conversation_id"], accepted["message_id"])
    assert insight["status"] == "available"
    # poison: messaging's sidecar forwards it to messages.submitted.dead-letter (its publishing
    # scope) and delivers it back to messaging (its subscription scope), which records it
    poison = {"message_id": "not-a-uuid", "conversation_id": str(uuid.uuid4())}
    response = publish_through(stack, "gateway", "messages.submitted", poison)
    assert response.status_code == 204, response.text
    recorded = wait_for(
        lambda: db.execute(
            "SELECT topic FROM dead_letters WHERE data->>'message_id' = 'not-a-uuid' "
            "AND data->>'conversation_id' = %s",
            (poison["conversation_id"],),
        ).fetchone(),
        what="the dead letter recorded",
    )
    assert recorded == ("messages.submitted",)
