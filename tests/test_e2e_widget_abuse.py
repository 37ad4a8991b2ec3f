"""The customer side under abuse, on one stack of its own (Redis broker and state store: what
is tested is the gateway's edge, not the broker): a flood of new sessions never holds back the
customers already chatting, sessions that never write leave nothing in the state store, renew
tokens rotate and a reused one revokes its session, and slow or oversized request heads are
cut off while the operators' sockets and the channel API keep answering.

Client addresses: uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 (``FORWARDED_ALLOW_IPS``),
so the tests play a trusted proxy in front of many visitors, as an ingress does.
"""

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
import redis
import websockets
from devstack.client import InboxClient, wait_for
from devstack.fixtures import start_stack
from jose import jwt

pytestmark = pytest.mark.e2e

API = "/api/v1/widget"
HEADER_TIMEOUT_S = 4.0
LIMITS = {
    "WIDGET_SESSION_RATE_LIMIT": "10/minute",
    "WIDGET_CHANNEL_SESSION_RATE_LIMIT": "600/minute",
    "WIDGET_CHANNEL_RATE_LIMIT": "600/minute",
    "CUSTOMER_READ_RATE_LIMIT": "30/minute",
    "CUSTOMER_RENEW_GRACE_S": "2",
    "HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
}


@pytest.fixture(scope="module")
def stack(output_dir: Path, fake_ollama):
    running = start_stack(
        output_dir, "widget-abuse", fake_ollama, services=("gateway", "messaging"), env=LIMITS
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def inbox(stack):
    client = InboxClient(stack)
    yield client
    client.http.close()


def start(stack, channel: str, address: str | None = None, origin: str | None = "site"):
    headers = {}
    if origin:
        headers["Origin"] = stack.widget_site_origin if origin == "site" else origin
    if address:
        headers["X-Forwarded-For"] = address
    return httpx.post(
        f"{stack.gateway_url}{API}/sessions", json={"channel": channel}, headers=headers, timeout=15
    )


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_session_flood_never_holds_back_customers_already_chatting(stack) -> None:
    customers = []
    for n in range(20):
        started = start(stack, stack.widget_channel, f"10.1.0.{n}")
        assert started.status_code == 201, started.text
        customers.append(started.json()["access_token"])

    def flood(n: int) -> httpx.Response:
        # 700 new sessions from 140 addresses, five each: under each address's limit, over
        # what is left of the channel's 600 a minute once its 20 customers started theirs
        return start(stack, stack.widget_channel, f"10.9.0.{n % 140}")

    def chat(n: int) -> httpx.Response:
        return httpx.post(
            f"{stack.gateway_url}{API}/messages",
            json={"body": f"Still here, message {n // 20}"},
            headers=bearer(customers[n % 20]),
            timeout=15,
        )

    with ThreadPoolExecutor(8) as pool:
        flooding = [pool.submit(flood, n) for n in range(700)]
        chatting = [pool.submit(chat, n) for n in range(60)]
        flooded = [f.result().status_code for f in flooding]
        chatted = [f.result() for f in chatting]
    assert [r.status_code for r in chatted] == [202] * 60, [r.text for r in chatted[:3]]
    assert flooded.count(201) == 580 and flooded.count(429) == 120, sorted(set(flooded))

    # one address alone gets its own 10 a minute, on a channel whose budget is untouched
    alone = [start(stack, stack.widget_no_ai_channel, "10.7.7.7") for _ in range(12)]
    assert [r.status_code for r in alone] == [201] * 10 + [429] * 2
    assert "per widget_session" in alone[-1].json()["detail"]
    assert int(alone[-1].headers["retry-after"]) > 0
    assert start(stack, stack.widget_no_ai_channel, "10.7.7.8").status_code == 201


def test_a_session_needs_an_origin_unless_the_channel_takes_server_clients(stack) -> None:
    refused = start(stack, stack.widget_no_ai_channel, "10.6.0.1", origin=None)
    assert refused.status_code == 403
    assert "browsers only" in refused.json()["detail"]
    foreign = start(stack, stack.widget_no_ai_channel, "10.6.0.1", origin="http://evil.example")
    assert foreign.status_code == 403 and "evil.example" in foreign.json()["detail"]


def test_sessions_that_never_write_leave_no_key_behind(stack) -> None:
    store = redis.Redis(port=stack.redis.port, password=stack.redis.password)

    def gateway_keys() -> set[bytes]:
        return {k for k in store.scan_iter(count=1000) if b"gateway:" in k}

    def keys_without_ttl() -> set[bytes]:
        return {k for k in gateway_keys() if store.ttl(k) == -1}

    before_keys = gateway_keys()
    before_lasting = keys_without_ttl()
    channels = [stack.widget_assistant_channel, stack.widget_no_ai_channel]

    def one(n: int) -> int:
        return start(stack, channels[n % 2], f"10.2.{n // 250}.{n % 250}").status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(1000)))
    assert codes.count(201) == 1000, sorted(set(codes))
    assert keys_without_ttl() == before_lasting
    added = gateway_keys() - before_keys
    assert not [k for k in added if b"gateway:owner:" in k]
    # what is left are rate-limit windows, gone within their minute
    assert all(0 < store.ttl(k) <= 61 for k in added if store.exists(k)), added


def test_renew_tokens_rotate_and_a_reused_one_revokes_the_session(stack) -> None:
    started = start(stack, stack.widget_assistant_channel, "10.3.0.1").json()

    def renew(token: str) -> httpx.Response:
        return httpx.post(f"{stack.gateway_url}{API}/sessions/renew", headers=bearer(token))

    first = started["renew_token"]
    renewed = renew(first)
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()["renew_token"]
    assert second != first
    # within the grace (two tabs at once) the retired token gets the same successor
    again = renew(first)
    assert again.status_code == 200
    jti = jwt.get_unverified_claims(again.json()["renew_token"])["jti"]
    assert jti == jwt.get_unverified_claims(second)["jti"]
    time.sleep(float(LIMITS["CUSTOMER_RENEW_GRACE_S"]) + 0.5)
    replayed = renew(first)
    assert replayed.status_code == 401 and "already used" in replayed.json()["detail"]
    # the whole chain is revoked: the newest token too
    revoked = renew(second)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert renew(started["access_token"]).status_code == 401  # an access token renews nothing


def test_reads_and_renewals_are_limited_per_customer(stack) -> None:
    started = start(stack, stack.widget_assistant_channel, "10.4.0.1").json()
    answers = [
        httpx.get(f"{stack.gateway_url}{API}/conversation", headers=bearer(started["access_token"]))
        for _ in range(32)
    ]
    codes = [a.status_code for a in answers]
    assert codes == [200] * 30 + [429] * 2, codes
    assert "per customer_read" in answers[-1].json()["detail"]
    renewed = httpx.post(
        f"{stack.gateway_url}{API}/sessions/renew", headers=bearer(started["renew_token"])
    )
    assert renewed.status_code == 429


async def _head(port: int, request: bytes) -> tuple[bytes, float]:
    """Send ``request`` at once; the server's first line and the seconds until it came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    writer.write(request)
    line = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return line, time.monotonic() - began


async def _slow_client(port: int) -> tuple[bytes, float]:
    """A slowloris client: a request line, then a header byte every 0.25 s, never done. The
    server's first line (``b""`` when it just closed) and how long the connection lasted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    answer = asyncio.ensure_future(reader.readline())
    try:
        while not answer.done() and time.monotonic() - began < 30:
            writer.write(b"a")
            await asyncio.wait({answer}, timeout=0.25)
        return (answer.result() if answer.done() else b"still open"), time.monotonic() - began
    except ConnectionError:
        return b"", time.monotonic() - began
    finally:
        answer.cancel()
        writer.close()


def test_slow_and_oversized_request_heads_are_cut_off(stack, inbox) -> None:
    port = int(stack.gateway_url.rsplit(":", 1)[1])
    big = b"X-Big: " + b"a" * 9000 + b"\r\n"
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )

    async def scenario() -> None:
        for request in (upgrade + big + b"\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n"):
            line, took_s = await _head(port, request)
            assert line.startswith(b"HTTP/1.1 431"), line
            assert took_s < 2, took_s

        slow = [asyncio.ensure_future(_slow_client(port)) for _ in range(300)]
        await asyncio.sleep(0.5)
        # meanwhile an operator's socket and the channel API keep answering
        async with websockets.connect(inbox.ws_url, subprotocols=inbox.ws_subprotocols) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
                for n in range(3):
                    sent = await http.post(
                        "/api/v1/inbound/messages",
                        json={"customer_id": f"slow-{uuid.uuid4()}", "body": f"Hello {n}"},
                        headers={"X-API-Key": stack.channel_key},
                    )
                    assert sent.status_code == 202, sent.text
                    conversation_id = sent.json()["conversation_id"]
                    while True:
                        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if event.get("conversation_id") == conversation_id:
                            break
        ended = await asyncio.gather(*slow)
        lines = {line for line, _ in ended}
        assert lines <= {b"HTTP/1.1 408 Request Timeout\r\n", b""}, lines
        longest = max(took for _, took in ended)
        assert longest < HEADER_TIMEOUT_S + 3, longest

    asyncio.run(scenario())


def test_refused_sockets_do_not_fill_the_log(stack) -> None:
    url = stack.gateway_url.replace("http://", "ws://")

    async def refused() -> list[int]:
        codes = []
        for path in ["/ws"] * 10 + [f"{API}/ws"] * 10:
            with pytest.raises(websockets.InvalidStatus) as refusal:
                await websockets.connect(url + path, subprotocols=["inbox.v1", "inbox.bearer.x"])
            codes.append(refusal.value.response.status_code)
        return codes

    assert asyncio.run(refused()) == [401] * 20
    log = stack.log_dir / "gateway.log"
    wait_for(lambda: "handshakes refused" in log.read_text(), what="the refusals' warning")
    text = log.read_text()
    assert "without completing handshake" not in text
    assert text.count("WebSocket handshakes refused") == 1
    assert '"WebSocket %s"' not in text and "WebSocket /ws" not in text
