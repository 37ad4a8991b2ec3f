"""Bad input gets a clear 4xx with a reason; nothing is stored that should not be."""

import asyncio
import base64
import json
import time
import uuid

import pytest
import websockets
from devstack.client import wait_for, ws_subprotocols
from jose import jwt

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


def b64(part: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def forged_tokens(stack) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": "demo",
        "aud": "support-inbox",
        "iss": "support-inbox-gateway",
        "iat": now,
        "exp": now + 600,
    }
    return {
        "expired": jwt.encode(
            {**claims, "iat": now - 7200, "exp": now - 3600}, stack.jwt_secret, algorithm="HS256"
        ),
        "forged": jwt.encode(claims, "x" * 48, algorithm="HS256"),
        "alg-none": b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + ".",
        "wrong-audience": jwt.encode(
            {**claims, "aud": "other"}, stack.jwt_secret, algorithm="HS256"
        ),
        "garbage": "abc.def.ghi",
    }


@pytest.mark.parametrize(
    "kind", ["missing", "expired", "forged", "alg-none", "wrong-audience", "garbage"]
)
def test_operator_routes_refuse_bad_tokens(inbox, kind) -> None:
    headers = (
        {} if kind == "missing" else {"Authorization": f"Bearer {forged_tokens(inbox.stack)[kind]}"}
    )
    for method, path, body in [
        ("GET", "/api/v1/conversations", None),
        ("GET", f"/api/v1/conversations/{uuid.uuid4()}", None),
        ("POST", f"/api/v1/conversations/{uuid.uuid4()}/messages", {"body": "hi"}),
        (
            "POST",
            f"/api/v1/conversations/{uuid.uuid4()}/messages/{uuid.uuid4()}/regenerate-insight",
            None,
        ),
    ]:
        response = inbox.http.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"]
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "kind", ["missing", "no-protocol", "expired", "forged", "alg-none", "garbage"]
)
def test_websocket_refuses_bad_tokens_during_the_handshake(inbox, kind) -> None:
    offered = {
        "missing": ["inbox.v1"],
        "no-protocol": [f"inbox.bearer.{inbox.token}"],
    }.get(kind) or ws_subprotocols(forged_tokens(inbox.stack).get(kind, ""))

    async def connect() -> None:
        async with websockets.connect(inbox.ws_url, subprotocols=offered):
            pass

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(connect())
    assert refused.value.response.status_code == 401
    assert b"invalid token" in refused.value.response.body


def test_websocket_offers_batched_frames_to_a_client_that_asks(inbox) -> None:
    """``inbox.v2``: each frame an array of events, the greeting and a pong included."""

    async def talk() -> tuple[str | None, list, list]:
        offered = ["inbox.v2", *inbox.ws_subprotocols]
        async with websockets.connect(inbox.ws_url, subprotocols=offered) as ws:
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ping"}))
            pong = json.loads(await ws.recv())
            return ws.subprotocol, hello, pong

    protocol, hello, pong = asyncio.run(talk())
    assert protocol == "inbox.v2"
    assert [e["type"] for e in hello] == ["hello"]
    assert pong == [{"type": "pong"}]


def test_websocket_refuses_a_token_in_the_url(inbox) -> None:
    """Even a valid token: a URL lands in logs and traces, so the token would be spent."""

    async def connect() -> None:
        async with websockets.connect(
            f"{inbox.ws_url}?token={inbox.token}", subprotocols=inbox.ws_subprotocols
        ):
            pass

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(connect())
    assert refused.value.response.status_code == 400
    assert b"Sec-WebSocket-Protocol" in refused.value.response.body


def test_login_failures(inbox) -> None:
    wrong = inbox.http.post("/api/v1/auth/login", json={"username": "demo", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "wrong username or password"}
    unknown = inbox.http.post("/api/v1/auth/login", json={"username": "eve", "password": "x"})
    assert unknown.status_code == 401
    empty = inbox.http.post("/api/v1/auth/login", json={})
    assert empty.status_code == 422
    assert "username" in empty.json()["detail"]


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (b"", 422, "body"),
        (b"{not json", 422, "JSON"),
        (b'{"customer_id": "c"}', 422, "body"),
        (b'{"customer_id": "c", "body": "   "}', 422, "body"),
        (json.dumps({"customer_id": "c", "body": "x" * 4001}).encode(), 422, "4000"),
        (json.dumps({"customer_id": "c", "body": "x" * 70_000}).encode(), 413, "65536 bytes"),
        (b'{"customer_id": "c", "body": "hi", "message_id": "nope"}', 422, "message_id"),
    ],
    ids=["empty", "malformed", "no-body", "blank-body", "too-long", "too-large", "bad-uuid"],
)
def test_inbound_rejects_bad_bodies(inbox, db, content, status, reason) -> None:
    before = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    response = inbox.http.post(
        "/api/v1/inbound/messages",
        content=content,
        headers={"X-API-Key": inbox.stack.channel_key, "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    # a good message sent after it is stored, and nothing else was
    accepted = inbox.send_customer("How do I activate my card?")
    wait_for(lambda: inbox.conversation(accepted["conversation_id"]), what="good message")
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == before + 1


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_inbound_requires_the_channel_key(inbox, key) -> None:
    headers = {"X-API-Key": key} if key else {}
    response = inbox.http.post(
        "/api/v1/inbound/messages", json={"customer_id": "c", "body": "hello"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["detail"] in {"missing X-API-Key header", "unknown API key"}


def test_unknown_conversation_is_404(inbox) -> None:
    missing = uuid.uuid4()
    got = inbox.http.get(f"/api/v1/conversations/{missing}", headers=inbox.auth)
    assert got.status_code == 404
    assert str(missing) in got.json()["detail"]
    reply = inbox.http.post(
        f"/api/v1/conversations/{missing}/messages", json={"body": "hello"}, headers=inbox.auth
    )
    assert reply.status_code == 404
    bad_id = inbox.http.get("/api/v1/conversations/not-a-uuid", headers=inbox.auth)
    assert bad_id.status_code == 422


def test_regenerate_refuses_what_has_no_insight_to_remake(inbox) -> None:
    def regenerate(conversation_id: object, message_id: object):
        return inbox.http.post(
            f"/api/v1/conversations/{conversation_id}/messages/{message_id}/regenerate-insight",
            headers=inbox.auth,
        )

    missing = regenerate(uuid.uuid4(), uuid.uuid4())
    assert missing.status_code == 404 and "conversation" in missing.json()["detail"]
    accepted = inbox.send_customer("Is there a fee for topping up by card?")
    conversation_id = accepted["conversation_id"]
    inbox.wait_insight(conversation_id, accepted["message_id"])
    unknown = regenerate(conversation_id, uuid.uuid4())
    assert unknown.status_code == 404 and "message" in unknown.json()["detail"]
    reply = inbox.reply(conversation_id, "Let me check that for you.")
    wait_for(lambda: inbox.message(conversation_id, reply["message_id"]), what="reply stored")
    operator_message = regenerate(conversation_id, reply["message_id"])
    assert operator_message.status_code == 409
    assert operator_message.json()["detail"].startswith("this message has no insight")
    first = regenerate(conversation_id, accepted["message_id"])
    assert first.status_code == 202, first.text
    wait_for(
        lambda: inbox.message(conversation_id, accepted["message_id"])["insight"]["revision"] == 2,
        what="revision 2 under way",
    )


def test_pagination_bounds(inbox) -> None:
    assert inbox.http.get("/api/v1/conversations?limit=0", headers=inbox.auth).status_code == 422
    assert inbox.http.get("/api/v1/conversations?limit=500", headers=inbox.auth).status_code == 422
    page = inbox.http.get("/api/v1/conversations?limit=2&offset=1", headers=inbox.auth).json()
    assert page["limit"] == 2 and page["offset"] == 1 and len(page["items"]) <= 2


def test_sidecar_only_routes_need_the_app_token(inbox) -> None:
    assert inbox.http.get("/dapr/subscribe").status_code == 401
    event = {
        "data": {"conversation_id": str(uuid.uuid4()), "version": 1, "reason": "message.created"}
    }
    assert inbox.http.post("/events/conversation.updated", json=event).status_code == 401


def test_pages_carry_a_strict_content_security_policy(inbox) -> None:
    page = inbox.http.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert inbox.http.get("/openapi.json").json()["info"]["title"] == "Support Inbox"
    assert inbox.http.get("/docs").status_code == 200


def test_knowledge_base_articles_are_served_and_unknown_ones_are_404(inbox) -> None:
    listed = inbox.http.get("/api/v1/knowledge").json()
    assert {"slug": "card-arrival", "title": "When will my new card arrive?"} in listed
    assert inbox.http.get("/api/v1/knowledge/card-arrival").text.startswith("# When will")
    missing = inbox.http.get("/api/v1/knowledge/no-such-article")
    assert missing.status_code == 404 and "no-such-article" in missing.json()["detail"]
    assert inbox.http.get("/api/v1/knowledge/..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert inbox.http.get("/api/v1/knowledge/UPPER_case").status_code == 422
