"""The subscription adapter answers Dapr's three words, never a 4xx/5xx, and checks the token."""

import json
from uuid import uuid4

import pytest
from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI
from fastapi.testclient import TestClient
from inbox_common.errors import PoisonError, TransientError
from inbox_common.events import ConversationUpdated
from inbox_common.subscriptions import (
    AppTokenMiddleware,
    DeadLetter,
    Entry,
    subscribe,
    subscribe_bulk,
    subscribe_dead_letters,
)
from opentelemetry import trace
from pydantic import SecretStr

TOKEN = "app-token-for-tests"


def make_client(behaviour: str) -> tuple[TestClient, list]:
    seen: list = []

    async def handler(event: ConversationUpdated) -> None:
        seen.append(event)
        if behaviour == "poison":
            raise PoisonError("bad")
        if behaviour == "transient":
            raise TransientError("later")
        if behaviour == "bug":
            raise RuntimeError("bug")

    app = FastAPI()
    app.add_middleware(AppTokenMiddleware, token=SecretStr(TOKEN))
    subscribe(DaprApp(app), "conversation.updated", ConversationUpdated, handler)
    return TestClient(app, headers={"dapr-api-token": TOKEN}), seen


def envelope(data: object) -> dict:
    return {
        "id": str(uuid4()),
        "specversion": "1.0",
        "type": "com.dapr.event.sent",
        "source": "messaging",
        "datacontenttype": "application/json",
        "data": data,
    }


GOOD = {"conversation_id": str(uuid4()), "version": 3, "reason": "ai.completed"}


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [("ok", "SUCCESS"), ("poison", "DROP"), ("transient", "RETRY"), ("bug", "RETRY")],
)
def test_handler_outcome_maps_to_dapr_status(behaviour: str, status: str) -> None:
    client, seen = make_client(behaviour)
    response = client.post("/events/conversation.updated", json=envelope(GOOD))
    assert response.status_code == 200
    assert response.json() == {"status": status}
    assert len(seen) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        json.dumps(envelope({"version": 1})).encode(),
        json.dumps(envelope("{broken")).encode(),
        json.dumps(envelope(None)).encode(),
    ],
    ids=["not-json", "not-object", "invalid-data", "data-string-not-json", "no-data"],
)
def test_poison_bodies_are_dropped_not_422(body: bytes) -> None:
    client, seen = make_client("ok")
    response = client.post("/events/conversation.updated", content=body)
    assert response.status_code == 200
    assert response.json() == {"status": "DROP"}
    assert seen == []


def test_data_as_json_string_is_accepted() -> None:
    client, seen = make_client("ok")
    response = client.post("/events/conversation.updated", json=envelope(json.dumps(GOOD)))
    assert response.json() == {"status": "SUCCESS"}
    assert seen[0].version == 3


def test_subscription_list_names_route_and_dead_letter_topic() -> None:
    client, _ = make_client("ok")
    (sub,) = client.get("/dapr/subscribe").json()
    assert sub == {
        "pubsubname": "inbox-broadcast",
        "topic": "conversation.updated",
        "route": "/events/conversation.updated",
        "metadata": {},
        "deadLetterTopic": "conversation.updated.dead-letter",
    }


@pytest.mark.parametrize("headers", [{}, {"dapr-api-token": "wrong"}])
def test_sidecar_routes_require_the_app_token(headers: dict) -> None:
    client, seen = make_client("ok")
    client.headers.clear()
    response = client.post("/events/conversation.updated", json=envelope(GOOD), headers=headers)
    assert response.status_code == 401
    assert client.get("/dapr/subscribe", headers=headers).status_code == 401
    assert seen == []


def make_dead_letter_client(fail: bool = False) -> tuple[TestClient, list]:
    seen: list = []

    async def handler(letter: DeadLetter) -> None:
        if fail:
            raise TransientError("database down")
        seen.append(letter)

    app = FastAPI()
    subscribe_dead_letters(DaprApp(app), "messages.submitted", handler)
    return TestClient(app), seen


@pytest.mark.parametrize(
    ("data", "kept"),
    [
        ({"body": 7}, {"body": 7}),  # valid JSON of the wrong shape
        ('{"body": 7}', {"body": 7}),  # the same as a JSON string
        ("not json {", "not json {"),  # kept as text
    ],
)
def test_dead_letters_are_handed_over_as_received(data: object, kept: object) -> None:
    client, seen = make_dead_letter_client()
    event = envelope(data)
    response = client.post("/events/messages.submitted.dead-letter", json=event)
    assert response.json() == {"status": "SUCCESS"}
    assert seen == [DeadLetter(event_id=event["id"], topic="messages.submitted", data=kept)]


def test_dead_letter_subscription_has_no_dead_letter_topic_and_retries() -> None:
    client, _ = make_dead_letter_client(fail=True)
    (sub,) = client.get("/dapr/subscribe").json()
    assert sub == {
        "pubsubname": "inbox-pubsub",
        "topic": "messages.submitted.dead-letter",
        "route": "/events/messages.submitted.dead-letter",
        "metadata": {},
    }
    response = client.post("/events/messages.submitted.dead-letter", json=envelope({}))
    assert response.json() == {"status": "RETRY"}


def make_bulk_client(raises: Exception | None = None) -> tuple[TestClient, list]:
    seen: list = []

    async def handler(entries: list[Entry[ConversationUpdated]]) -> list:
        seen.extend(entries)
        if raises is not None:
            raise raises
        outcomes = {1: None, 2: PoisonError("refused"), 3: TransientError("later")}
        return [outcomes.get(e.event.version, RuntimeError("bug")) for e in entries]

    app = FastAPI()
    subscribe_bulk(
        DaprApp(app),
        "conversation.updated",
        ConversationUpdated,
        handler,
        max_messages=50,
        max_await_ms=5,
    )
    return TestClient(app), seen


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def bulk(*events: dict) -> dict:
    """A bulk delivery as daprd posts it: each entry's ``event`` a parsed CloudEvent."""
    return {
        "id": str(uuid4()),
        "topic": "conversation.updated",
        "pubsubname": "inbox-broadcast",
        "type": "com.dapr.event.sent.bulk",
        "metadata": {},
        "entries": [
            {"entryId": f"e{i}", "event": e, "contentType": "application/cloudevents+json"}
            for i, e in enumerate(events)
        ],
    }


def test_a_bulk_delivery_gets_a_status_per_entry(caplog: pytest.LogCaptureFixture) -> None:
    client, seen = make_bulk_client()
    traced = {**envelope({**GOOD, "version": 1}), "traceparent": TRACEPARENT}
    body = bulk(
        traced,
        envelope({"version": 1}),  # not a ConversationUpdated: dropped before the handler
        envelope({**GOOD, "version": 2}),
        envelope(json.dumps({**GOOD, "version": 3})),
        envelope({**GOOD, "version": 4}),
        "not a CloudEvent",
    )
    response = client.post("/events/conversation.updated", json=body)
    assert response.status_code == 200
    assert sorted(response.json()["statuses"], key=lambda s: s["entryId"]) == [
        {"entryId": "e0", "status": "SUCCESS"},
        {"entryId": "e1", "status": "DROP"},
        {"entryId": "e2", "status": "DROP"},
        {"entryId": "e3", "status": "RETRY"},
        {"entryId": "e4", "status": "RETRY"},
        {"entryId": "e5", "status": "DROP"},
    ]
    assert [e.event.version for e in seen] == [1, 2, 3, 4]
    # a drop is logged under the CloudEvent id, as the dead letter is kept
    dropped = [r.event_id for r in caplog.records if r.getMessage().startswith("dropping")]
    ids = [e["event"]["id"] if isinstance(e["event"], dict) else None for e in body["entries"]]
    assert dropped == [ids[1], None, ids[2]]  # refused before the handler, then by it
    parent = trace.get_current_span(seen[0].parent).get_span_context()
    assert f"{parent.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert not trace.get_current_span(seen[1].parent).get_span_context().is_valid


@pytest.mark.parametrize(
    ("raises", "status"), [(TransientError("down"), "RETRY"), (PoisonError("all bad"), "DROP")]
)
def test_a_bulk_handler_that_raises_answers_for_every_entry(raises, status) -> None:  # noqa: ANN001
    client, _ = make_bulk_client(raises)
    body = bulk(envelope({**GOOD, "version": 1}), envelope({**GOOD, "version": 2}))
    statuses = client.post("/events/conversation.updated", json=body).json()["statuses"]
    assert [s["status"] for s in statuses] == [status, status]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"entries": 3}'])
def test_a_bulk_delivery_without_entries_is_retried_whole(body: bytes) -> None:
    client, seen = make_bulk_client()
    response = client.post("/events/conversation.updated", content=body)
    assert response.status_code == 200
    assert response.json() == {"statuses": []}  # daprd retries each entry it has no status for
    assert seen == []


def test_a_bulk_subscription_asks_the_sidecar_for_batches() -> None:
    client, _ = make_bulk_client()
    (sub,) = client.get("/dapr/subscribe").json()
    assert sub["route"] == "/events/conversation.updated"
    assert sub["deadLetterTopic"] == "conversation.updated.dead-letter"
    assert sub["bulkSubscribe"] == {
        "enabled": True,
        "maxMessagesCount": 50,
        "maxAwaitDurationMs": 5,
    }
