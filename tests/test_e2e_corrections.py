"""Learning from operators, on the whole inbox (two replicas of each service, the intent step
trained on the demo set's training split): an operator corrects a message's intent; the
insight shows it, messaging stores it as a labelled example, and every ai-worker replica
learns it, so the next message with the same text gets the corrected intent."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.browser import log_in, open_conversation
from devstack.client import Database, InboxClient, wait_for
from devstack.dataset import write_training_examples
from devstack.fixtures import FakeOllama, start_matrix_stack
from devstack.stack import Stack
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]

# a held-out message the intent step gets wrong (it says edit_personal_details is change_pin)
TEXT = "I need to change my data."
RIGHT = "edit_personal_details"
LEARNED_WITHIN_S = 60


@pytest.fixture(scope="module")
def stack(output_dir: Path, fake_ollama: FakeOllama, broker: str) -> Iterator[Stack]:
    examples = write_training_examples(output_dir / "corrections-examples.jsonl")
    running = start_matrix_stack(
        output_dir,
        f"corrections-{broker}",
        fake_ollama,
        broker,
        env={"AI_INTENT_EXAMPLES": str(examples)},
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def inbox(stack: Stack) -> Iterator[InboxClient]:
    client = InboxClient(stack)
    yield client
    client.http.close()


def correct(inbox: InboxClient, conversation_id: str, message_id: str, intent: str):  # noqa: ANN201
    return inbox.http.put(
        f"/api/v1/conversations/{conversation_id}/messages/{message_id}/intent",
        json={"intent": intent},
        headers=inbox.auth,
    )


def test_a_correction_sticks_and_every_replica_learns_it(stack: Stack, inbox: InboxClient) -> None:
    first = inbox.send_customer(TEXT, customer_id="cust-correct-0")
    insight = inbox.wait_insight(first["conversation_id"], first["message_id"])
    assert insight["status"] == "available" and insight["intent"] not in (None, RIGHT)

    accepted = correct(inbox, first["conversation_id"], first["message_id"], RIGHT)
    assert accepted.status_code == 202, accepted.text
    wait_for(
        lambda: (
            (inbox.message(first["conversation_id"], first["message_id"]) or {})
            .get("insight", {})
            .get("intent")
            == RIGHT
        ),
        what="the corrected intent in the read model",
    )
    db = Database(stack.postgres.url)
    try:
        ((intent, by),) = db.execute(
            "SELECT intent, corrected_by FROM intent_corrections WHERE message_id = %s",
            (first["message_id"],),
        ).fetchall()
    finally:
        db.close()
    assert (intent, by) == (RIGHT, stack.operator[0])

    # the same text again, from other customers: every replica must have learned it; the
    # messages are spread over both ai-workers by the broker
    def learned() -> bool:
        sent = [
            inbox.send_customer(TEXT.upper(), customer_id=f"cust-correct-{uuid.uuid4()}")
            for _ in range(6)
        ]
        intents = [inbox.wait_insight(s["conversation_id"], s["message_id"]) for s in sent]
        return all(i["intent"] == RIGHT for i in intents)

    wait_for(learned, LEARNED_WITHIN_S, "every replica predicting the correction")


def test_a_correction_names_what_is_wrong_with_it(inbox: InboxClient) -> None:
    sent = inbox.send_customer("Where is my card?", customer_id="cust-correct-bad")
    inbox.wait_insight(sent["conversation_id"], sent["message_id"])
    outside = correct(inbox, sent["conversation_id"], sent["message_id"], "pizza_order")
    assert outside.status_code == 422 and "not in the taxonomy" in outside.text
    unknown = correct(inbox, sent["conversation_id"], str(uuid.uuid4()), "card_arrival")
    assert unknown.status_code == 404 and "no customer message" in unknown.text
    anonymous = inbox.http.put(
        f"/api/v1/conversations/{sent['conversation_id']}/messages/{sent['message_id']}/intent",
        json={"intent": "card_arrival"},
    )
    assert anonymous.status_code == 401
    taxonomy = inbox.http.get("/api/v1/intents", headers=inbox.auth).json()
    assert len(taxonomy) == 77 and {"name", "description", "escalate"} <= set(taxonomy[0])


def test_an_operator_corrects_an_intent_in_the_page_and_sees_it_stick(
    page: Page, stack: Stack, inbox: InboxClient
) -> None:
    sent = inbox.send_customer("What other currencies are available to change to?")
    log_in(page, stack)
    open_conversation(page, sent["conversation_id"])
    panel = page.locator(f'[data-message-id="{sent["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".intent-badge")).to_have_text("fiat_currency_support")
    panel.locator(".intent-correct").select_option("exchange_via_app")
    expect(panel.locator(".intent-badge")).to_have_text("exchange_via_app")
    page.reload()
    open_conversation(page, sent["conversation_id"])
    expect(panel.locator(".intent-badge")).to_have_text("exchange_via_app")
    expect(panel.locator(".intent-correct")).to_have_value("exchange_via_app")


def test_agents_correct_and_only_admins_review_what_the_ai_learns(
    stack: Stack, inbox: InboxClient
) -> None:
    user, password = stack.agent
    login = inbox.http.post("/api/v1/auth/login", json={"username": user, "password": password})
    assert login.status_code == 200 and login.json()["operator"]["role"] == "agent"
    agent = {"Authorization": f"Bearer {login.json()['access_token']}"}
    sent = inbox.send_customer("how much to get my card in 2 days?", customer_id="cust-agent")
    inbox.wait_insight(sent["conversation_id"], sent["message_id"])
    corrected = inbox.http.put(
        f"/api/v1/conversations/{sent['conversation_id']}/messages/{sent['message_id']}/intent",
        json={"intent": "card_delivery_estimate"},
        headers=agent,
    )
    assert corrected.status_code == 202, corrected.text

    refused = inbox.http.get("/api/v1/intent-examples", headers=agent)
    assert refused.status_code == 403 and "admin role is required" in refused.text

    def reviewed() -> dict | None:
        examples = inbox.http.get("/api/v1/intent-examples", headers=inbox.auth).json()
        return next(
            (e for e in examples["examples"] if e["text"] == "how much to get my card in 2 days?"),
            None,
        )

    example = wait_for(reviewed, what="the agent's correction in the admins' list")
    assert (example["intent"], example["corrected_by"]) == ("card_delivery_estimate", user)
