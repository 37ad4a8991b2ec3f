"""Messaging asks again for an analysis that never came back, with its real daprd (Redis,
PostgreSQL) and nothing else running: no ai-worker answers, so every ``message.created`` and
``analysis.requested`` is "lost" unless the test answers it.

Events go in through messaging's sidecar and come out as entries of the Redis streams behind
``inbox-pubsub``, as in ``test_integration_services.py``. The watchdog's waits are shortened:
the first re-request after 1.5 s, then 3 s, then 6 s; after 2 re-requests it gives up.
"""

import json
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from devstack.client import wait_for
from devstack.fixtures import start_stack
from devstack.probe import Probe
from inbox_common.keys import conversation_key

pytestmark = pytest.mark.integration

AFTER_S = 1.5
MAX_REDELIVERIES = 2


def submitted(body: str = "My transfer has not arrived yet.") -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()),
        "author_role": "customer",
        "author_id": "cust-redeliver",
        "body": body,
        "submitted_at": datetime.now(UTC).isoformat(),
    }


def completion(event: dict, revision: int, summary: str) -> dict:
    return {
        "message_id": event["message_id"],
        "conversation_id": event["conversation_id"],
        "revision": revision,
        "status": "available",
        "intent": "transfer_not_received_by_recipient",
        "summary": summary,
        "suggested_reply": "We are checking it.",
        "model": "m",
        "duration_ms": 12,
    }


RETENTION_S = 30


@pytest.fixture(scope="module")
def messaging(output_dir, fake_ollama):
    stack = start_stack(
        output_dir,
        "int-redelivery-messaging",
        fake_ollama,
        services=("messaging",),
        env={
            "INSIGHT_REDELIVERY_INTERVAL_S": "0.3",
            "INSIGHT_REDELIVER_AFTER_S": str(AFTER_S),
            "INSIGHT_MAX_REDELIVERIES": str(MAX_REDELIVERIES),
            "OUTBOX_RETENTION_S": str(RETENTION_S),
            "OUTBOX_PRUNE_INTERVAL_S": "0.3",
        },
    )
    try:
        with psycopg.connect(stack.postgres.url, autocommit=True) as db:
            yield Probe(stack, "messaging"), db
    finally:
        stack.stop()


def on(probe: Probe, topic: str, message_id: str) -> list[dict]:
    return [e for e in probe.events(topic) if e["message_id"] == message_id]


def insight(probe: Probe, event: dict) -> dict:
    model = probe.state(conversation_key(event["conversation_id"]))
    return model["messages"][0]["insight"] if model else {"status": None}


def same_event(a: dict, b: dict) -> bool:
    def norm(e: dict) -> dict:
        return {
            k: datetime.fromisoformat(v) if k.endswith("_at") and v else v for k, v in e.items()
        }

    return norm(a) == norm(b)


def outbox_drained(db: psycopg.Connection) -> bool:
    return db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0] == 0


def redeliveries(db: psycopg.Connection, message_id: str) -> tuple[str, int, int]:
    return db.execute(
        "SELECT status, revision, redeliveries FROM ai_insights WHERE message_id = %s",
        (message_id,),
    ).fetchone()


def test_a_lost_message_created_is_sent_again_until_answered(messaging) -> None:
    probe, db = messaging
    event = submitted()
    probe.publish("messages.submitted", event)
    (first,) = wait_for(
        lambda: on(probe, "message.created", event["message_id"]), what="message.created"
    )
    # nobody answers: the same message.created (same message_id, seq, body) comes again
    again = wait_for(
        lambda: (c := on(probe, "message.created", event["message_id"])) and len(c) >= 2 and c,
        what="message.created re-requested",
    )
    assert same_event(again[1], first), (again[1], first)
    assert first["seq"] == 1 and first["body"] == event["body"]

    probe.publish("ai.completed", completion(event, 1, "Transfer pending."))
    wait_for(lambda: insight(probe, event)["status"] == "available", what="insight stored")
    wait_for(lambda: outbox_drained(db), what="outbox drained")
    status, revision, count = redeliveries(db, event["message_id"])
    assert (status, revision) == ("available", 1) and 1 <= count <= MAX_REDELIVERIES
    published = len(on(probe, "message.created", event["message_id"]))
    assert published == 1 + count
    time.sleep(AFTER_S * 2**MAX_REDELIVERIES + 1)  # longer than any wait left: nothing more
    assert redeliveries(db, event["message_id"]) == ("available", 1, count)
    assert len(on(probe, "message.created", event["message_id"])) == published
    assert db.execute(
        "SELECT summary FROM ai_insights WHERE message_id = %s", (event["message_id"],)
    ).fetchall() == [("Transfer pending.",)]
    stored = db.execute(
        "SELECT count(*) FROM conversation_events WHERE conversation_id = %s AND kind = 'insight'",
        (event["conversation_id"],),
    ).fetchone()[0]
    assert stored == 1


def test_a_lost_regenerate_is_sent_again_as_analysis_requested(messaging) -> None:
    probe, db = messaging
    event = submitted("I was charged a fee for a card payment.")
    probe.publish("messages.submitted", event)
    wait_for(lambda: insight(probe, event)["status"] == "processing", what="read model")
    probe.publish("ai.completed", completion(event, 1, "first"))
    wait_for(lambda: insight(probe, event)["status"] == "available", what="revision 1 stored")
    probe.publish(
        "insight.requested",
        {
            "request_id": str(uuid.uuid4()),
            "message_id": event["message_id"],
            "conversation_id": event["conversation_id"],
            "requested_by": "demo",
            "requested_at": datetime.now(UTC).isoformat(),
        },
    )
    (first,) = wait_for(
        lambda: on(probe, "analysis.requested", event["message_id"]), what="analysis.requested"
    )
    assert redeliveries(db, event["message_id"]) == ("processing", 2, 0)  # reset per revision
    again = wait_for(
        lambda: (a := on(probe, "analysis.requested", event["message_id"])) and len(a) >= 2 and a,
        what="analysis.requested re-requested",
    )
    assert same_event(again[1], first), (again[1], first)
    assert again[1]["revision"] == 2 and again[1]["requested_by"] == "demo"

    probe.publish("ai.completed", completion(event, 2, "second"))
    wait_for(
        lambda: (i := insight(probe, event))["status"] == "available" and i["revision"] == 2,
        what="revision 2 stored",
    )
    wait_for(lambda: outbox_drained(db), what="outbox drained")
    status, revision, count = redeliveries(db, event["message_id"])
    published = len(on(probe, "analysis.requested", event["message_id"]))
    assert (status, revision) == ("available", 2) and published == 1 + count
    time.sleep(AFTER_S * 2**MAX_REDELIVERIES + 1)
    assert len(on(probe, "analysis.requested", event["message_id"])) == published


def test_an_insight_never_answered_ends_unavailable_with_a_reason(messaging) -> None:
    probe, db = messaging
    event = submitted("Why is my top-up still pending?")
    probe.publish("messages.submitted", event)
    shown = wait_for(
        lambda: (i := insight(probe, event))["status"] == "unavailable" and i,
        timeout_s=60,
        what="insight given up as unavailable",
    )
    assert "re-requests" in shown["error"] and "Regenerate" in shown["error"]
    wait_for(lambda: outbox_drained(db), what="outbox drained")
    assert len(on(probe, "message.created", event["message_id"])) == 1 + MAX_REDELIVERIES
    assert redeliveries(db, event["message_id"]) == ("unavailable", 1, MAX_REDELIVERIES)
    logged = db.execute(
        "SELECT data->>'status' FROM conversation_events WHERE conversation_id = %s"
        " AND kind = 'insight'",
        (event["conversation_id"],),
    ).fetchall()
    assert logged == [("unavailable",)]
    # a late answer of the abandoned revision is a duplicate; Regenerate starts afresh
    probe.publish("ai.completed", completion(event, 1, "late"))
    wait_for(lambda: probe.acked("ai.completed", "messaging"), what="late answer acked")
    assert redeliveries(db, event["message_id"])[0] == "unavailable"


def test_published_outbox_rows_are_deleted_after_their_retention(messaging) -> None:
    _, db = messaging
    payload = json.dumps(
        {"conversation_id": str(uuid.uuid4()), "version": 1, "reason": "message.created"}
    )
    ids = {}
    for name, age_s in (("old", 3600), ("fresh", 0)):
        ids[name] = db.execute(
            "INSERT INTO outbox (topic, payload, created_at, published_at)"
            " VALUES ('conversation.updated', %s, now() - interval '1 hour',"
            " now() - %s * interval '1 second') RETURNING id",
            (payload, age_s),
        ).fetchone()[0]

    def kept() -> set[str]:
        rows = db.execute("SELECT id FROM outbox WHERE id = ANY(%s)", (list(ids.values()),))
        found = {row[0] for row in rows.fetchall()}
        return {name for name, row_id in ids.items() if row_id in found}

    wait_for(lambda: kept() == {"fresh"}, what="the old published row deleted")
    time.sleep(1)
    assert kept() == {"fresh"}  # younger than OUTBOX_RETENTION_S: kept
