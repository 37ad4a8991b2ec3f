"""Conversation lifecycle through the public API and in the browser, on the whole stack:
status and assignment (``PATCH /api/v1/conversations/{id}``), the event log, and the AI
summary made in the background when a conversation is resolved."""

import json
import time
import uuid

import pytest
from devstack.browser import log_in, open_conversation
from devstack.client import E2E_TIMEOUT_S, wait_for
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]

TIMEOUT_MS = E2E_TIMEOUT_S * 1000


def patch(inbox, conversation_id: str, body: object, headers: dict | None = None):
    return inbox.http.patch(
        f"/api/v1/conversations/{conversation_id}",
        json=body,
        headers=inbox.auth if headers is None else headers,
    )


def stored_conversation(inbox, body: str) -> dict:
    accepted = inbox.send_customer(body)
    wait_for(lambda: inbox.conversation(accepted["conversation_id"]), what="conversation stored")
    return accepted


def test_resolve_returns_at_once_and_the_summary_follows(inbox) -> None:
    # the stand-in answers "delayed" messages (and the summary of them) after 2 s
    accepted = stored_conversation(inbox, "[[fake:delayed]] My card payment was declined twice.")
    conversation_id = accepted["conversation_id"]
    inbox.reply(conversation_id, "Your card was blocked for safety; it works again now.")
    wait_for(lambda: len(inbox.conversation(conversation_id)["messages"]) == 2, what="reply stored")
    started = time.monotonic()
    response = patch(inbox, conversation_id, {"status": "resolved", "assignee": "demo"})
    answered_s = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert response.json()["conversation_id"] == conversation_id
    assert answered_s < 1.5  # the summary takes at least 2 s: the resolve did not wait

    resolved = wait_for(
        lambda: (c := inbox.conversation(conversation_id))["status"] == "resolved" and c,
        what="resolved",
    )
    assert resolved["assignee"] == "demo" and resolved["resolved_at"]
    assert resolved["summary"]["status"] == "resolved"
    assert resolved["resolution_summary"]["status"] == "processing"

    def summarised() -> dict | None:
        summary = inbox.conversation(conversation_id)["resolution_summary"]
        return summary if summary["status"] != "processing" else None

    summary = wait_for(summarised, what="resolution summary")
    assert summary["status"] == "available" and summary["resolution"] == 1
    assert "Resolved after 2 messages." in summary["text"]
    assert "My card payment was declined twice." in summary["text"]
    assert "it works again now" in summary["text"]
    events = inbox.conversation(conversation_id)["events"]
    assert [e["kind"] for e in events][:2] == ["message", "message"]
    kinds = [e["kind"] for e in events]
    assert {"assignment", "status", "summary"} <= set(kinds)
    assert kinds.index("status") < kinds.index("summary")

    def listed_row() -> dict | None:
        listed = inbox.http.get("/api/v1/conversations", headers=inbox.auth).json()["items"]
        row = next(i for i in listed if i["conversation_id"] == conversation_id)
        return row if row["status"] == "resolved" else None

    # the inbox list is rebuilt at most every INBOX_INTERVAL_S
    row = wait_for(listed_row, what="the resolved row in the inbox list")
    assert (row["status"], row["assignee"]) == ("resolved", "demo")


def test_a_customer_message_reopens_a_resolved_conversation(inbox) -> None:
    accepted = stored_conversation(inbox, "How do I close my account?")
    conversation_id = accepted["conversation_id"]
    assert patch(inbox, conversation_id, {"status": "resolved"}).status_code == 202
    wait_for(lambda: inbox.conversation(conversation_id)["status"] == "resolved", what="resolved")
    inbox.send_customer("Actually, one more question.", conversation_id=conversation_id)
    reopened = wait_for(
        lambda: (c := inbox.conversation(conversation_id))["status"] == "open" and c,
        what="reopened",
    )
    assert reopened["resolved_at"] is None
    last_status = [e for e in reopened["events"] if e["kind"] == "status"][-1]
    assert last_status["data"]["reason"] == "customer message"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"assignee": "nobody-here"}, 422, "is not an operator"),
        ({"status": "closed"}, 422, "status"),
        ({"status": None}, 422, "not null"),
        ({}, 422, "give `status`, `assignee` or both"),
        ({"status": "open", "colour": "red"}, 422, "colour"),
        ([], 422, ""),
    ],
)
def test_bad_changes_are_refused(inbox, body, status, says) -> None:
    accepted = stored_conversation(inbox, "Where is my refund?")
    response = patch(inbox, accepted["conversation_id"], body)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


def test_changes_to_unknown_conversations_or_without_a_token_are_refused(inbox) -> None:
    unknown = patch(inbox, str(uuid.uuid4()), {"status": "resolved"})
    assert unknown.status_code == 404 and "not found" in unknown.json()["detail"]
    accepted = stored_conversation(inbox, "Where is my refund?")
    anonymous = patch(inbox, accepted["conversation_id"], {"status": "resolved"}, headers={})
    assert anonymous.status_code == 401
    assert inbox.conversation(accepted["conversation_id"])["status"] == "open"


# ---------------------------------------------------------------------------- browser


def test_status_assignment_and_summary_in_the_browser(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
    accepted = inbox.send_customer("I lost my card yesterday evening.")
    conversation_id = accepted["conversation_id"]
    open_conversation(page, conversation_id)
    item = page.locator(f'.conv-item[data-conversation-id="{conversation_id}"]')
    expect(page.locator("#conversation-status")).to_have_value("open")
    expect(page.locator("#conversation-assignee")).to_have_text("Unassigned")
    expect(item.locator(".status-label")).to_have_count(0)

    page.select_option("#conversation-status", "pending")
    expect(item.locator(".status-label")).to_have_text("Pending")
    page.click("#assign-button")
    expect(page.locator("#conversation-assignee")).to_have_text("Assigned to you")
    expect(page.locator("#assign-button")).to_have_text("Unassign")
    expect(item.locator(".conv-assignee")).to_contain_text("@demo")

    page.fill("#reply-body", "I have frozen your card and ordered a new one.")
    page.keyboard.press("Control+Enter")
    expect(page.locator('#messages [data-author-role="operator"]:not(.pending)')).to_have_count(1)
    page.select_option("#conversation-status", "resolved")
    expect(item.locator(".status-label")).to_have_text("Resolved")
    summary = page.locator("#resolution-summary")
    expect(summary).to_have_attribute("data-status", "available")
    expect(summary.locator(".resolution-summary-text")).to_contain_text(
        "I lost my card yesterday evening."
    )
    expect(summary.locator(".resolution-summary-text")).to_contain_text("ordered a new one")
    # the summary is the first thing in the conversation, above the messages
    assert page.evaluate(
        "document.querySelector('#resolution-summary').compareDocumentPosition("
        "document.querySelector('#messages')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )

    page.click("#activity .activity-toggle")
    activity = page.locator("#activity-list .activity-item")
    expect(activity.locator("xpath=self::*[@data-kind='summary']")).to_have_count(1)
    kinds = activity.evaluate_all("items => items.map((i) => i.dataset.kind)")
    assert kinds[0] == "message" and kinds[-1] == "summary"
    assert {"status", "assignment", "insight"} <= set(kinds)
    expect(page.locator("#activity-list")).to_contain_text("demo set the status to Pending")
    expect(page.locator("#activity-list")).to_contain_text("demo took the conversation")
    expect(page.locator("#activity-list")).to_contain_text("demo set the status to Resolved")

    expect(page.locator("#assign-button")).to_have_attribute("data-action", "unassign")
    # the click's own request, so a refusal (429, 409) fails here with its status and reason
    with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        page.click("#assign-button")
    assert patched.value.status == 202, (patched.value.status, patched.value.text())
    assert json.loads(patched.value.request.post_data or "{}") == {"assignee": None}
    expect(page.locator("#conversation-assignee")).to_have_text("Unassigned")
    expect(item.locator(".conv-assignee")).to_have_count(0)
