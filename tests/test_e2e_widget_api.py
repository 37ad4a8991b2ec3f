"""The chat widget's API on the whole stack, per broker: customer sessions, the customer's own
conversation live on its socket, and what a customer token must never open.

The stack's widget channel ``demo`` allows one other origin (``stack.widget_site_origin``),
the site that embeds the widget; its identity secret signs that site's users.
"""

import asyncio
import json
import time
import uuid

import httpx2 as httpx
import pytest
import websockets
from devstack.client import E2E_TIMEOUT_S, wait_for, ws_subprotocols
from devstack.delivery import replicas
from jose import jwt

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]

API = "/api/v1/widget"


def start(inbox, origin: str | None = None, **body: object) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return inbox.http.post(f"{API}/sessions", json={"channel": "demo", **body}, headers=headers)


def session(inbox, **body: object) -> dict:
    response = start(inbox, inbox.stack.widget_site_origin, **body)
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def send(inbox, token: str, body: str, **fields: object) -> httpx.Response:
    return inbox.http.post(f"{API}/messages", json={"body": body, **fields}, headers=bearer(token))


def conversation(inbox, token: str) -> dict:
    response = inbox.http.get(f"{API}/conversation", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def wait_view(inbox, token: str, done, what: str) -> dict:
    deadline = time.monotonic() + E2E_TIMEOUT_S
    while time.monotonic() < deadline:
        view = conversation(inbox, token)
        if done(view):
            return view
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def identity(stack, sub: str, key: str | None = None) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "iat": now, "exp": now + 300},
        key or stack.widget_identity_secret,
        algorithm="HS256",
    )


def test_a_customer_chats_and_the_operator_answers(inbox) -> None:
    started = session(inbox)
    token = started["access_token"]
    assert started["customer_id"].startswith("web:demo:")
    assert conversation(inbox, token)["version"] == 0  # nothing stored yet
    message_id = str(uuid.uuid4())
    for _ in range(2):  # a resend with the same message_id is stored once
        sent = send(inbox, token, "Hello, my card has not arrived.", message_id=message_id)
        assert sent.status_code == 202, sent.text
    view = wait_view(inbox, token, lambda v: v["messages"], "the message stored")
    assert [m["message_id"] for m in view["messages"]] == [message_id]
    assert view["human_joined"] is False

    # the operator sees it as any conversation, and answers
    operator_view = inbox.conversation(started["conversation_id"])
    assert operator_view["customer_id"] == started["customer_id"]
    inbox.reply(started["conversation_id"], "It was posted yesterday.")
    view = wait_view(inbox, token, lambda v: len(v["messages"]) == 2, "the operator's reply")
    assert view["human_joined"] is True
    assert [m["author_role"] for m in view["messages"]] == ["customer", "operator"]
    assert "insight" not in json.dumps(view) and "demo" not in json.dumps(view["messages"])


def test_the_customer_ends_the_chat_and_it_is_resolved_and_summarised(inbox) -> None:
    started = session(inbox)
    token = started["access_token"]
    end = f"{API}/conversation/end"
    nothing = inbox.http.post(end, headers=bearer(token))
    assert nothing.status_code == 409 and "no message" in nothing.json()["detail"]
    assert send(inbox, token, "Thanks, that was all I needed.").status_code == 202
    wait_view(inbox, token, lambda v: v["messages"], "the message stored")
    ended = inbox.http.post(end, headers=bearer(token))
    assert ended.status_code == 202, ended.text
    view = wait_view(inbox, token, lambda v: v["status"] == "resolved", "the chat ended")
    assert "summary" not in json.dumps(view)  # the summary is for operators
    again = inbox.http.post(end, headers=bearer(token))
    assert again.status_code == 409 and "already resolved" in again.json()["detail"]

    conversation_id = started["conversation_id"]
    summary = wait_for(
        lambda: ((inbox.conversation(conversation_id) or {}).get("resolution_summary") or {}).get(
            "text"
        ),
        what="the resolution summary",
    )
    assert summary
    events = inbox.conversation(conversation_id)["events"]
    (status_event,) = [e for e in events if e["kind"] == "status"]
    assert status_event["actor"] == started["customer_id"]
    assert status_event["data"] == {
        "from": "open",
        "to": "resolved",
        "reason": "the customer ended the chat",
    }
    # writing again reopens it
    assert send(inbox, token, "One more question, sorry.").status_code == 202
    wait_view(inbox, token, lambda v: v["status"] == "open", "reopened")
    # an operator's token cannot end a customer's chat
    assert inbox.http.post(end, headers=inbox.auth).status_code == 401


def test_the_socket_pushes_the_operators_reply_on_every_gateway(inbox, stack) -> None:
    started = session(inbox)
    token = started["access_token"]
    assert send(inbox, token, "Is anyone there?").status_code == 202
    wait_view(inbox, token, lambda v: v["messages"], "the message stored")

    async def watch(url: str, reply: str) -> dict:
        async with websockets.connect(
            url, subprotocols=ws_subprotocols(token), origin=stack.widget_site_origin
        ) as ws:
            assert json.loads(await ws.recv()) == {"type": "hello"}
            first = json.loads(await ws.recv())
            assert first["type"] == "conversation"
            await asyncio.to_thread(inbox.reply, started["conversation_id"], reply)
            async with asyncio.timeout(E2E_TIMEOUT_S):
                while True:
                    push = json.loads(await ws.recv())
                    if len(push["messages"]) == len(first["messages"]) + 1:
                        return push

    for n, gateway in enumerate(replicas(stack, "gateway")):
        url = gateway.url.replace("http://", "ws://") + f"{API}/ws"
        push = asyncio.run(watch(url, f"Reply {n} from the team."))
        assert push["type"] == "conversation" and push["human_joined"]
        assert push["messages"][-1]["author_role"] == "operator"
        assert push["messages"][-1]["body"] == f"Reply {n} from the team."


def test_the_socket_refuses_strangers(inbox, stack) -> None:
    token = session(inbox)["access_token"]
    url = stack.gateway_url.replace("http://", "ws://") + f"{API}/ws"

    async def status(**options: object) -> int:
        try:
            async with websockets.connect(url, **options):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(status(subprotocols=ws_subprotocols(inbox.token))) == 401  # operator's
    assert asyncio.run(status(subprotocols=["inbox.v1"])) == 401
    evil = {"subprotocols": ws_subprotocols(token), "origin": "http://evil.example"}
    assert asyncio.run(status(**evil)) == 403
    assert asyncio.run(status(subprotocols=ws_subprotocols(token))) == 101


def test_a_customer_token_opens_nothing_else(inbox) -> None:
    mine, other = session(inbox), session(inbox)
    assert send(inbox, other["access_token"], "Theirs").status_code == 202
    token = mine["access_token"]
    # never an operator route
    for method, path in (
        ("GET", "/api/v1/conversations"),
        ("GET", f"/api/v1/conversations/{other['conversation_id']}"),
        ("POST", f"/api/v1/conversations/{other['conversation_id']}/messages"),
        ("PATCH", f"/api/v1/conversations/{other['conversation_id']}"),
    ):
        response = inbox.http.request(method, path, headers=bearer(token), json={"body": "x"})
        assert response.status_code == 401, (method, path, response.text)
    # the conversation is the token's: no field names another
    sent = send(inbox, token, "Mine", conversation_id=other["conversation_id"])
    assert sent.status_code == 202 and sent.json()["conversation_id"] == mine["conversation_id"]
    # an operator's token, a renew token and a tampered token open no widget route
    for wrong in (inbox.token, mine["renew_token"], token[:-3] + "abc"):
        assert inbox.http.get(f"{API}/conversation", headers=bearer(wrong)).status_code == 401
    # nor does the customer API key's channel: widget tokens are not channel keys
    response = inbox.http.post(
        "/api/v1/inbound/messages",
        json={"customer_id": mine["customer_id"], "body": "x"},
        headers={"X-API-Key": token},
    )
    assert response.status_code == 401


def test_origins_are_the_channels_own(inbox, stack) -> None:
    assert start(inbox, "http://evil.example").status_code == 403
    assert start(inbox, stack.widget_site_origin, channel="nope").status_code == 403
    allowed = start(inbox, stack.widget_site_origin)
    assert allowed.headers["access-control-allow-origin"] == stack.widget_site_origin
    preflight = {
        "Origin": stack.widget_site_origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = inbox.http.options(f"{API}/messages", headers=preflight)
    assert ok.status_code == 200, ok.text
    refused = inbox.http.options(
        f"{API}/messages", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    # the operator API answers no cross-origin preflight
    operator = inbox.http.options("/api/v1/conversations", headers=preflight)
    assert "access-control-allow-origin" not in operator.headers


def test_the_frame_is_framed_by_the_channels_site_only(inbox, stack) -> None:
    frame = inbox.http.get("/widget/frame", params={"channel": "demo"})
    assert frame.status_code == 200
    policy = frame.headers["content-security-policy"]
    assert f"frame-ancestors {stack.widget_site_origin};" in policy
    assert "x-frame-options" not in frame.headers
    assert inbox.http.get("/widget/frame", params={"channel": "nope"}).status_code == 404
    page = inbox.http.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_signed_in_user_keeps_one_conversation(inbox, stack) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    first = session(inbox, identity=identity(stack, user))
    second = session(inbox, identity=identity(stack, user))
    assert first["customer_id"] == second["customer_id"] == f"web:demo:user:{user}"
    assert first["conversation_id"] == second["conversation_id"]
    forged = start(inbox, stack.widget_site_origin, identity=identity(stack, user, key="x" * 43))
    assert forged.status_code == 401 and "identity" in forged.json()["detail"]


def test_renewal_keeps_the_conversation(inbox) -> None:
    started = session(inbox)
    renewed = inbox.http.post(f"{API}/sessions/renew", headers=bearer(started["renew_token"]))
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert body["conversation_id"] == started["conversation_id"]
    assert body["renew_token"] not in (None, started["renew_token"])  # rotated
    assert body["access_token"] != started["renew_token"]
    wrong = inbox.http.post(f"{API}/sessions/renew", headers=bearer(started["access_token"]))
    assert wrong.status_code == 401


def test_bad_text_and_floods_are_refused_with_reasons(inbox, stack) -> None:
    token = session(inbox)["access_token"]
    for body, reason in (("", "body"), ("a\x00b", "control character"), ("x" * 4001, "body")):
        response = send(inbox, token, body)
        assert response.status_code == 422 and reason in response.text, response.text
    # CUSTOMER_RATE_LIMIT (20/minute) counted across both gateway replicas
    gateways = replicas(stack, "gateway")
    answers = [
        httpx.post(
            f"{gateways[n % len(gateways)].url}{API}/messages",
            json={"body": f"flood {n}"},
            headers=bearer(token),
            timeout=15,
        )
        for n in range(24)
    ]
    codes = [a.status_code for a in answers]
    assert codes.count(202) == 20 and codes.count(429) == 4, codes
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)
