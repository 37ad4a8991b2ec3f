"""Conversation lifecycle, one service at a time with its real daprd (Redis, PostgreSQL):
messaging applies status and assignee changes, logs every change, asks for a resolution
summary and stores it; the ai-worker writes that summary.

Events go in through the service's own sidecar and come out as entries of the Redis streams
behind ``inbox-pubsub``, as in ``test_integration_services.py``.
"""

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from devstack.client import wait_for
from devstack.fixtures import start_stack
from devstack.probe import Probe
from inbox_common.keys import conversation_key

pytestmark = pytest.mark.integration


def now() -> str:
    return datetime.now(UTC).isoformat()


def submitted(conversation_id: str, body: str, role: str = "customer") -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "author_role": role,
        "author_id": "cust-life" if role == "customer" else "demo",
        "body": body,
        "submitted_at": now(),
    }


def change(conversation_id: str, **fields: object) -> dict:
    return {
        "request_id": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "changed_by": "demo",
        "changed_at": now(),
        **fields,
    }


# ---------------------------------------------------------------------------- messaging


@pytest.fixture(scope="module")
def messaging(output_dir, fake_ollama):
    stack = start_stack(output_dir, "int-lifecycle-messaging", fake_ollama, services=("messaging",))
    try:
        with psycopg.connect(stack.postgres.url, autocommit=True) as db:
            yield Probe(stack, "messaging"), db
    finally:
        stack.stop()


def conversation_with(probe: Probe, *messages: tuple[str, str]) -> str:
    """A stored conversation with ``messages`` (role, body), in order; returns its id."""
    conversation_id = str(uuid.uuid4())
    for count, (role, body) in enumerate(messages, start=1):
        probe.publish("messages.submitted", submitted(conversation_id, body, role))
        wait_for(
            lambda c=count: (m := read(probe, conversation_id)) and len(m["messages"]) == c,
            what=f"message {count} stored",
        )
    return conversation_id


def read(probe: Probe, conversation_id: str) -> dict | None:
    return probe.state(conversation_key(conversation_id))


def read_when(probe: Probe, conversation_id: str, check, what: str) -> dict:  # noqa: ANN001
    return wait_for(lambda: (m := read(probe, conversation_id)) and check(m) and m, what=what)


def summary_requests(probe: Probe, conversation_id: str) -> list[dict]:
    return [e for e in probe.events("summary.requested") if e["conversation_id"] == conversation_id]


def test_status_and_assignment_are_stored_logged_and_idempotent(messaging) -> None:
    probe, db = messaging
    conversation_id = conversation_with(probe, ("customer", "My card has not arrived."))
    assign = change(conversation_id, assignee_set=True, assignee="demo", status="pending")
    probe.publish("conversation.changed", assign)
    probe.publish("conversation.changed", assign)  # redelivery: applied once
    model = read_when(
        probe, conversation_id, lambda m: m["status"] == "pending", "pending and assigned"
    )
    assert model["assignee"] == "demo" and model["resolved_at"] is None
    assert (model["summary"]["status"], model["summary"]["assignee"]) == ("pending", "demo")
    inbox = {i["conversation_id"]: i for i in probe.state("inbox:index")["items"]}
    assert inbox[conversation_id]["status"] == "pending"
    wait_for(lambda: probe.acked("conversation.changed", "messaging"), what="changes acked")
    unassign = change(conversation_id, assignee_set=True, assignee=None)
    probe.publish("conversation.changed", unassign)
    model = read_when(probe, conversation_id, lambda m: m["assignee"] is None, "unassigned")
    assert model["status"] == "pending"  # left as it was
    kinds = [(e["kind"], e["actor"], e["data"]) for e in model["events"]]
    assert kinds == [
        (
            "message",
            "cust-life",
            {"message_id": model["messages"][0]["message_id"], "seq": 1, "author_role": "customer"},
        ),
        ("assignment", "demo", {"from": None, "to": "demo"}),
        ("status", "demo", {"from": "open", "to": "pending"}),
        ("assignment", "demo", {"from": "demo", "to": None}),
    ]
    assert (
        db.execute(
            "SELECT count(*) FROM conversation_changes WHERE request_id = %s",
            (assign["request_id"],),
        ).fetchone()[0]
        == 1
    )
    assert (
        db.execute(
            "SELECT count(*) FROM outbox WHERE payload->>'conversation_id' = %s"
            " AND payload->>'reason' = 'conversation.changed'",
            (conversation_id,),
        ).fetchone()[0]
        == 2
    )


def test_resolve_asks_for_a_summary_and_stores_only_the_current_one(messaging) -> None:
    probe, db = messaging
    conversation_id = conversation_with(
        probe,
        ("customer", "I was charged twice for one coffee."),
        ("operator", "I have refunded the second charge."),
        ("customer", "Thank you, I see it now."),
    )
    probe.publish("conversation.changed", change(conversation_id, status="resolved"))
    (request,) = wait_for(lambda: summary_requests(probe, conversation_id), what="summary asked")
    assert request["resolution"] == 1 and request["requested_by"] == "demo"
    assert request["omitted"] == 0
    assert [(m["role"], m["body"]) for m in request["messages"]] == [
        ("customer", "I was charged twice for one coffee."),
        ("operator", "I have refunded the second charge."),
        ("customer", "Thank you, I see it now."),
    ]
    model = read_when(probe, conversation_id, lambda m: m["status"] == "resolved", "resolved")
    assert model["resolved_at"] is not None
    assert model["resolution_summary"]["status"] == "processing"
    assert model["resolution_summary"]["resolution"] == 1

    # the customer writes again: reopened (logged), then resolved again -> resolution 2
    probe.publish("messages.submitted", submitted(conversation_id, "One more thing!"))
    model = read_when(probe, conversation_id, lambda m: m["status"] == "open", "reopened")
    assert model["resolved_at"] is None
    reopened = [e for e in model["events"] if e["kind"] == "status"][-1]
    assert reopened["data"] == {"from": "resolved", "to": "open", "reason": "customer message"}
    assert reopened["actor"] == "cust-life"
    probe.publish("conversation.changed", change(conversation_id, status="resolved"))
    requests = wait_for(
        lambda: (r := summary_requests(probe, conversation_id)) and len(r) == 2 and r,
        what="second summary asked",
    )
    assert requests[1]["resolution"] == 2 and len(requests[1]["messages"]) == 4

    def completed(resolution: int, text: str) -> dict:
        return {
            "conversation_id": conversation_id,
            "resolution": resolution,
            "status": "available",
            "summary": text,
            "model": "m",
            "duration_ms": 5,
        }

    probe.publish("summary.completed", completed(1, "stale: of the first resolve"))
    probe.publish("summary.completed", completed(2, "Double charge refunded."))
    probe.publish("summary.completed", completed(2, "a duplicate"))
    model = read_when(
        probe,
        conversation_id,
        lambda m: m["resolution_summary"]["status"] == "available",
        "summary stored",
    )
    wait_for(lambda: probe.acked("summary.completed", "messaging"), what="summaries acked")
    model = read(probe, conversation_id)
    summary = model["resolution_summary"]
    assert summary["resolution"] == 2
    assert summary["text"] in ("Double charge refunded.", "a duplicate")  # whichever came first
    assert db.execute(
        "SELECT resolution, status FROM resolution_summaries WHERE conversation_id = %s"
        " ORDER BY resolution",
        (conversation_id,),
    ).fetchall() == [(1, "processing"), (2, "available")]
    # the event log: every change in order
    log = [(e["kind"], e["data"].get("to") or e["data"].get("status")) for e in model["events"]]
    assert log == [
        ("message", None),
        ("message", None),
        ("message", None),
        ("status", "resolved"),
        ("message", None),
        ("status", "open"),
        ("status", "resolved"),
        ("summary", "available"),
    ]
    ids = [e["id"] for e in model["events"]]
    assert ids == sorted(ids)


def test_the_event_log_records_insights_and_requests(messaging) -> None:
    probe, _ = messaging
    conversation_id = conversation_with(probe, ("customer", "Where is my refund?"))
    message_id = read(probe, conversation_id)["messages"][0]["message_id"]
    base = {"message_id": message_id, "conversation_id": conversation_id, "model": "m"}
    probe.publish(
        "ai.completed",
        {
            **base,
            "revision": 1,
            "status": "available",
            "intent": "refund",
            "summary": "s",
            "suggested_reply": "r",
        },
    )
    read_when(probe, conversation_id, lambda m: len(m["events"]) == 2, "insight logged")
    probe.publish(
        "insight.requested",
        {
            "request_id": str(uuid.uuid4()),
            "message_id": message_id,
            "conversation_id": conversation_id,
            "requested_by": "demo",
            "requested_at": now(),
        },
    )
    model = read_when(probe, conversation_id, lambda m: len(m["events"]) == 3, "request logged")
    assert [
        (e["kind"], e["actor"], e["data"].get("status"), e["data"].get("revision"))
        for e in model["events"]
    ] == [
        ("message", "cust-life", None, None),
        ("insight", None, "available", 1),
        ("insight", "demo", "requested", 2),
    ]
    assert model["events"][1]["data"]["intent"] == "refund"


def test_changes_to_unknown_conversations_are_dead_letters(messaging) -> None:
    probe, db = messaging
    unknown = change(str(uuid.uuid4()), status="resolved")
    probe.publish("conversation.changed", unknown)
    probe.publish("conversation.changed", {"request_id": "x", "status": "closed"})
    wait_for(
        lambda: (
            db.execute(
                "SELECT count(*) FROM dead_letters WHERE topic = 'conversation.changed'"
            ).fetchone()[0]
            >= 2
        ),
        what="dead letters recorded",
    )


# ---------------------------------------------------------------------------- ai-worker


def summary_request(*lines: tuple[str, str]) -> dict:
    return {
        "conversation_id": str(uuid.uuid4()),
        "resolution": 1,
        "messages": [{"role": role, "body": body} for role, body in lines],
        "requested_by": "demo",
    }


def summaries(probe: Probe, request: dict) -> list[dict]:
    return [
        e
        for e in probe.events("summary.completed")
        if e["conversation_id"] == request["conversation_id"]
    ]


@pytest.fixture(scope="module")
def worker(output_dir, fake_ollama):
    stack = start_stack(output_dir, "int-lifecycle-worker", fake_ollama, services=("ai-worker",))
    try:
        yield Probe(stack, "ai-worker")
    finally:
        stack.stop()


def test_worker_summarises_a_resolved_conversation_once(worker, fake_ollama) -> None:
    request = summary_request(
        ("customer", "My card was declined at the supermarket."),
        ("operator", "Your card was blocked after three wrong PINs; it is unblocked now."),
    )
    before = sum(fake_ollama.stats()["summaries"].values())
    worker.publish("summary.requested", request)
    (done,) = wait_for(lambda: summaries(worker, request), what="summary.completed")
    assert done["status"] == "available" and done["resolution"] == 1
    assert done["summary"].startswith("Resolved after 2 messages.")
    assert "My card was declined at the supermarket." in done["summary"]
    assert "it is unblocked now" in done["summary"]
    assert done["model"] == "fake-insight:1b" and done["error"] is None
    worker.publish("summary.requested", request)  # redelivery: from the cache
    wait_for(lambda: len(summaries(worker, request)) == 2, what="republished")
    assert summaries(worker, request)[1] == done
    assert sum(fake_ollama.stats()["summaries"].values()) == before + 1


def test_worker_summary_of_bad_model_output_is_unavailable(worker) -> None:
    request = summary_request(("customer", "[[fake:prose]] Where is my money?"))
    worker.publish("summary.requested", request)
    (done,) = wait_for(lambda: summaries(worker, request), what="summary.completed")
    assert done["status"] == "unavailable" and done["summary"] is None
    assert "no JSON object" in done["error"]


def test_unreachable_ollama_means_an_unavailable_summary(worker_without_ollama) -> None:
    request = summary_request(("customer", "Hello?"))
    worker_without_ollama.publish("summary.requested", request)
    (done,) = wait_for(lambda: summaries(worker_without_ollama, request), what="summary")
    assert done["status"] == "unavailable" and "unreachable" in done["error"]
