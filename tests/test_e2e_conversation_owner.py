"""A conversation belongs to the customer who opened it: a continuation from another
``customer_id`` is refused with 409 at the edge, and messaging (the system of record) never
stores one that got past it. Operators are not customers: their replies are not checked."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx2 as httpx
import pytest
from devstack.client import publish_through, wait_for
from devstack.fixtures import own_stack

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


# A stack of its own per broker, so what these tests leave behind reaches no other test.
stack, inbox, db = own_stack("owner")


def send(inbox, customer_id: str, body: str, **fields: object) -> httpx.Response:
    return inbox.http.post(
        "/api/v1/inbound/messages",
        json={"customer_id": customer_id, "body": body, **{k: str(v) for k, v in fields.items()}},
        headers={"X-API-Key": inbox.stack.channel_key},
    )


def authors(db, conversation_id: str) -> list[str]:
    rows = db.execute(
        "SELECT author_id FROM messages WHERE conversation_id = %s ORDER BY seq", (conversation_id,)
    )
    return [r[0] for r in rows.fetchall()]


def publish_submitted(stack, event: dict) -> str:
    """Publish ``messages.submitted`` straight to the gateway's sidecar, past every check of
    the gateway's routes (what an old gateway, or any other publisher, could do)."""
    event_id = str(uuid.uuid4())
    response = publish_through(
        stack, "gateway", "messages.submitted", event, event_id=event_id
    )
    assert response.status_code == 204, response.text
    return event_id


def submitted(conversation_id: str, customer_id: str, body: str) -> dict:
    return {
        "message_id": str(uuid.uuid4()),
        "conversation_id": conversation_id,
        "author_role": "customer",
        "author_id": customer_id,
        "body": body,
        "submitted_at": datetime.now(UTC).isoformat(),
    }


def test_another_customer_cannot_append_to_or_reopen_a_conversation(inbox, db) -> None:
    opened = send(inbox, "cust-alice", "My card has not arrived.")
    assert opened.status_code == 202, opened.text
    conversation_id = opened.json()["conversation_id"]
    wait_for(lambda: inbox.conversation(conversation_id), what="conversation stored")

    foreign = send(inbox, "cust-mallory", "Send the card to me.", conversation_id=conversation_id)
    assert foreign.status_code == 409, foreign.text
    assert "another customer" in foreign.json()["detail"]

    reply = inbox.reply(conversation_id, "It is on its way.")
    wait_for(lambda: inbox.message(conversation_id, reply["message_id"]), what="operator reply")
    resolved = inbox.http.patch(
        f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=inbox.auth
    )
    assert resolved.status_code == 202, resolved.text
    wait_for(lambda: inbox.conversation(conversation_id)["status"] == "resolved", what="resolved")
    reopen = send(inbox, "cust-mallory", "Reopen this.", conversation_id=conversation_id)
    assert reopen.status_code == 409, reopen.text

    own = send(inbox, "cust-alice", "Thanks, it came.", conversation_id=conversation_id)
    assert own.status_code == 202, own.text
    own_id = own.json()["message_id"]
    wait_for(lambda: inbox.message(conversation_id, own_id), what="the owner's continuation")
    assert inbox.conversation(conversation_id)["status"] == "open"  # the owner may reopen it
    assert authors(db, conversation_id) == ["cust-alice", "demo", "cust-alice"]


def test_resending_the_same_message_stores_it_once(inbox, db) -> None:
    conversation_id, message_id = uuid.uuid4(), uuid.uuid4()
    for _ in range(3):
        again = send(
            inbox, "cust-resend", "Hello?", conversation_id=conversation_id, message_id=message_id
        )
        assert again.status_code == 202, again.text
        assert again.json()["conversation_id"] == str(conversation_id)
    wait_for(lambda: inbox.message(str(conversation_id), str(message_id)), what="stored")
    assert authors(db, str(conversation_id)) == ["cust-resend"]


def test_two_customers_opening_the_same_new_conversation_id_one_wins(inbox, db) -> None:
    """First write wins on the owner claim: exactly one of two racing customers gets 202."""
    for _ in range(5):
        conversation_id = uuid.uuid4()
        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(
                    lambda who, cid=conversation_id: (
                        who,
                        send(inbox, who, "Race", conversation_id=cid),
                    ),
                    ["cust-red", "cust-blue"],
                )
            )
        statuses = sorted(r.status_code for _, r in answers)
        assert statuses == [202, 409], [r.text for _, r in answers]
        (winner,) = [who for who, r in answers if r.status_code == 202]
        wait_for(lambda cid=conversation_id: authors(db, str(cid)), what="the winner stored")
        assert authors(db, str(conversation_id)) == [winner]


def test_a_conversation_opened_before_owner_claims_is_checked_against_its_read_model(
    stack, inbox, db
) -> None:
    """A conversation stored without the gateway's owner claim (opened before the claim
    existed): the gateway falls back to the customer in its read model."""
    conversation_id = str(uuid.uuid4())
    publish_submitted(stack, submitted(conversation_id, "cust-old", "Opened long ago."))
    wait_for(lambda: inbox.conversation(conversation_id), what="old conversation projected")
    foreign = send(inbox, "cust-mallory", "Mine now.", conversation_id=conversation_id)
    assert foreign.status_code == 409, foreign.text
    own = send(inbox, "cust-old", "Still me.", conversation_id=conversation_id)
    assert own.status_code == 202, own.text
    wait_for(lambda: len(authors(db, conversation_id)) == 2, what="the owner's continuation")
    assert authors(db, conversation_id) == ["cust-old", "cust-old"]


def test_messaging_never_stores_another_customers_message(stack, inbox, db) -> None:
    """The system of record refuses, in the storing transaction, a customer message to a
    conversation of another customer: dropped to the dead-letter topic, kept there."""
    opened = inbox.send_customer("Where is my refund?")
    conversation_id = opened["conversation_id"]
    wait_for(lambda: inbox.conversation(conversation_id), what="conversation stored")
    inbox.http.patch(
        f"/api/v1/conversations/{conversation_id}", json={"status": "pending"}, headers=inbox.auth
    ).raise_for_status()
    wait_for(lambda: inbox.conversation(conversation_id)["status"] == "pending", what="pending")
    foreign = submitted(conversation_id, "cust-mallory", "Injected past the gateway.")
    event_id = publish_submitted(stack, foreign)
    row = wait_for(
        lambda: db.execute(
            "SELECT data FROM dead_letters WHERE event_id = %s", (event_id,)
        ).fetchone(),
        what="the foreign message in the dead letters",
    )
    assert row[0]["message_id"] == foreign["message_id"]
    assert authors(db, conversation_id) == ["cust-test"]
    conversation = inbox.conversation(conversation_id)
    assert conversation["status"] == "pending"  # not reopened
    assert json.dumps(conversation).count("Injected") == 0
