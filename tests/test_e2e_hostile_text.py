"""Hostile text at the edge: a 202 means stored, exactly as sent; a refusal is a 422 that
names the field, and nothing of it is stored. Nothing is both accepted and lost.

The rule (``inbox_common.events.PlainText`` / ``PlainLine``): C0 control characters (NUL
included) and lone surrogates are refused, since PostgreSQL cannot hold NUL in ``text`` or
``jsonb`` and UTF-8 cannot encode a lone surrogate; tab, newline and carriage return are
allowed in message bodies only. Everything else is valid Unicode text and stored unchanged:
bidi overrides, zero-width runs, noncharacters, C1 controls, long tokens.
"""

import json
import time
import uuid
from datetime import UTC, datetime

import httpx2 as httpx
import pytest
from devstack.client import E2E_TIMEOUT_S, publish_through, wait_for
from devstack.fixtures import own_stack

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


# A stack of its own per broker, so what these tests leave behind reaches no other test.
stack, inbox, db = own_stack("hostile-text")


LONGEST = {"body": 4000, "subject": 200, "customer_id": 128}
"""Most characters each field takes (MAX_BODY_CHARS, the subject bound, AuthorId)."""

REFUSED_EVERYWHERE = {
    "nul": "a\x00b",
    "nul-only": "\x00",
    "bell": "ding\x07",
    "escape-sequence": "\x1b[31mred\x1b[0m",
    "backspace": "ab\x08c",
    "vertical-tab": "a\x0bb",
    "form-feed": "a\x0cb",
    "unit-separator": "a\x1fb",
    "lone-high-surrogate": "a\ud800b",
    "lone-low-surrogate": "x\udfff",
    "reversed-surrogate-pair": "x\udc00\ud800y",
}
"""Refused with 422 in every text field."""

LINE_BREAKS = {"tab-newline-crlf": "a\tb\nc\r\nd"}
"""Refused in one-line fields (customer_id, subject); stored as sent in a body."""


def stored_everywhere(field: str) -> dict[str, str]:
    """Valid text: accepted with 202 and stored unchanged, in every field."""
    n = LONGEST[field]
    return {
        "bidi-override": "\u202eevil\u202c.exe",
        "bidi-isolates": "\u2066abc\u2069\u2067\u05d0\u05d1\u2069",
        "zero-width-run": "a" + "\u200b\u200c\u200d\u2060" * (n // 4 - 1) + "b",
        "bom-inside": "x\ufeffhello",
        "zwj-family": "\U0001f469\u200d\U0001f469\u200d\U0001f467",
        "astral": "\U0001d573\U0001d58a\U0001d591 \U0001f600",
        "combining-run": "e" + "\u0301" * (n - 1),
        "line-separators": "a\u2028b\u2029c",
        "del-and-c1": "a\x7f\x80\x9bb",
        "noncharacters": "a\ufdd0\ufffe\uffff\U0010ffffb",
        "replacement-char": "\ufffd\ufffd",
        "rtl-text": "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
        "long-token": "x" * n,
        "long-astral-token": "\U0001f600" * n,
        "escaped-nul-as-text": "\\u0000 and \\ud800",
        "sql-and-html": "'); DROP TABLE messages;-- <script>alert(1)</script>",
        "format-strings": "%s %(x)s {0} %n",
    }


def corpus(field: str) -> list[tuple[str, str, bool]]:
    """``(name, text, stored)`` for ``field``: ``stored`` says a 202 is expected."""
    cases = [(name, text, False) for name, text in REFUSED_EVERYWHERE.items()]
    cases += [(name, text, field == "body") for name, text in LINE_BREAKS.items()]
    cases += [(name, text, True) for name, text in stored_everywhere(field).items()]
    return cases


STORED_AS = {
    "body": "SELECT body FROM messages WHERE message_id = %s",
    "customer_id": "SELECT m.author_id FROM messages m JOIN conversations c"
    " USING (conversation_id) WHERE m.message_id = %s AND c.customer_id = m.author_id",
    "subject": "SELECT c.subject FROM messages m JOIN conversations c USING (conversation_id)"
    " WHERE m.message_id = %s",
}


def post_raw(inbox, payload: dict) -> httpx.Response:
    """POST ``payload`` as JSON with every non-ASCII character escaped (``\\u0000``,
    ``\\ud800``): what a client's JSON encoder sends for such text."""
    return inbox.http.post(
        "/api/v1/inbound/messages",
        content=json.dumps(payload, ensure_ascii=True).encode(),
        headers={"X-API-Key": inbox.stack.channel_key, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("field", ["body", "subject", "customer_id"])
def test_hostile_text_is_stored_as_sent_or_refused_naming_the_field(inbox, db, field) -> None:
    sent: list[tuple[str, str, bool, str, httpx.Response]] = []
    for name, text, expect_stored in corpus(field):
        message_id = str(uuid.uuid4())
        payload = {
            "message_id": message_id,
            "customer_id": "cust-hostile",
            "body": f"Hostile {field}: {name}",
            field: text,
        }
        sent.append((name, text, expect_stored, message_id, post_raw(inbox, payload)))

    problems = []
    for name, _, expect_stored, _, response in sent:
        expected = 202 if expect_stored else 422
        if response.status_code != expected:
            problems.append(f"{name}: expected {expected}, got {response.status_code}")
        elif expected == 422 and field not in response.json()["detail"]:
            problems.append(f"{name}: 422 without naming {field}: {response.text[:200]}")

    # Every 2xx ends stored, as sent (nothing accepted and lost), whatever was expected.
    accepted = {mid: (name, text) for name, text, _, mid, r in sent if r.is_success}
    stored: dict[str, str] = {}
    deadline = time.monotonic() + E2E_TIMEOUT_S
    while len(stored) < len(accepted) and time.monotonic() < deadline:
        for mid in accepted.keys() - stored.keys():
            row = db.execute(STORED_AS[field], (mid,)).fetchone()
            if row is not None:
                stored[mid] = row[0]
        time.sleep(0.2)
    for mid, (name, text) in accepted.items():
        if mid not in stored:
            problems.append(f"{name}: answered 2xx but never stored")
        elif stored[mid] != text:
            problems.append(f"{name}: stored changed: {stored[mid][:60]!r} != {text[:60]!r}")
    refused = [mid for _, _, _, mid, r in sent if not r.is_success]
    leaked = db.execute(
        "SELECT count(*) FROM messages WHERE message_id = ANY(%s::uuid[])", (refused,)
    )
    if (count := leaked.fetchone()[0]) != 0:
        problems.append(f"{count} refused messages stored")
    assert not problems, "\n".join(problems)


def test_refused_text_in_operator_routes_names_the_field(inbox) -> None:
    accepted = inbox.send_customer("Where is my card?")
    conversation_id = accepted["conversation_id"]
    wait_for(lambda: inbox.conversation(conversation_id), what="conversation stored")
    for bad in ("a\x00b", "a\ud800b", "\x1b[2J"):
        reply = inbox.http.post(
            f"/api/v1/conversations/{conversation_id}/messages",
            content=json.dumps({"body": bad}).encode(),
            headers={**inbox.auth, "Content-Type": "application/json"},
        )
        assert reply.status_code == 422, reply.text
        assert "body" in reply.json()["detail"]
        if not any("\ud800" <= c <= "\udfff" for c in bad):  # a URL cannot carry those
            search = inbox.http.get(
                "/api/v1/conversations/search", params={"q": bad}, headers=inbox.auth
            )
            assert search.status_code == 422, search.text
            assert "q" in search.json()["detail"]
        login = inbox.http.post(
            "/api/v1/auth/login",
            content=json.dumps({"username": bad, "password": "x"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert login.status_code == 422, login.text
        assert "username" in login.json()["detail"]
    # an unknown key with a lone surrogate where extra keys are refused: a 4xx, never a 500
    patch = inbox.http.patch(
        f"/api/v1/conversations/{conversation_id}",
        content=b'{"status": "open", "\\ud800": 1}',
        headers={**inbox.auth, "Content-Type": "application/json"},
    )
    assert patch.status_code == 422, patch.text
    # bytes that are not UTF-8 at all
    broken = inbox.http.post(
        "/api/v1/inbound/messages",
        content=b'{"customer_id": "c", "body": "\xff\xfe"}',
        headers={"X-API-Key": inbox.stack.channel_key, "Content-Type": "application/json"},
    )
    assert 400 <= broken.status_code < 500, broken.text
    good = inbox.reply(conversation_id, "Text with \u202e bidi \u200b\u200b and\ttabs\nkept")
    message = wait_for(lambda: inbox.message(conversation_id, good["message_id"]), what="reply")
    assert message["body"] == "Text with \u202e bidi \u200b\u200b and\ttabs\nkept"


def test_a_dead_letter_is_kept_even_when_jsonb_cannot_hold_it(stack, db) -> None:
    """An event the schema refuses goes to the dead-letter topic; messaging keeps it even
    when its data holds a NUL (``\\u0000``), which ``jsonb`` refuses: as JSON text."""
    event_id = str(uuid.uuid4())
    poison = {
        "message_id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()),
        "author_role": "customer",
        "author_id": "cust-nul",
        "body": "NUL \x00 inside",
        "submitted_at": datetime.now(UTC).isoformat(),
        "extra\x00key": "\x00",
    }
    response = publish_through(
        stack, "gateway", "messages.submitted", poison, event_id=event_id
    )
    assert response.status_code == 204, response.text
    row = wait_for(
        lambda: db.execute(
            "SELECT topic, data, data_text FROM dead_letters WHERE event_id = %s", (event_id,)
        ).fetchone(),
        what="the dead letter kept",
    )
    topic, data, data_text = row
    assert topic == "messages.submitted"
    assert data is None
    assert json.loads(data_text) == poison
    assert db.execute(
        "SELECT count(*) FROM messages WHERE message_id = %s", (poison["message_id"],)
    ).fetchone() == (0,)
