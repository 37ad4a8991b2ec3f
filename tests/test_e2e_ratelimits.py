"""Rate limits hold across two gateway replicas (shared through the Dapr state store, on Redis
and on PostgreSQL), answer 429 with ``Retry-After``, and a flooding WebSocket is throttled,
then closed with 1008."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import pytest
import websockets
from devstack.client import E2E_TIMEOUT_S, InboxClient, ws_subprotocols
from devstack.delivery import replicas
from devstack.fixtures import start_stack
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

LIMITS = {
    "OPERATOR_RATE_LIMIT": "8/minute",
    "CHANNEL_RATE_LIMIT": "10/minute",
    "LOGIN_RATE_LIMIT": "4/minute",
    "WS_MESSAGE_RATE_LIMIT": "5/minute",
}


@pytest.fixture(scope="module", params=["redis", "postgresql"])
def limited(request, output_dir, fake_ollama):
    """Two gateway replicas with low limits, sharing the state store ``request.param``."""
    stack = start_stack(
        output_dir,
        f"ratelimits-{request.param}",
        fake_ollama,
        services=("gateway", "messaging"),
        replicas=2,
        state_store=request.param,
        env=LIMITS,
    )
    try:
        yield stack, [g.url for g in replicas(stack, "gateway")]
    finally:
        stack.stop()


def spread(urls: list[str], count: int, call) -> list[httpx.Response]:
    """``count`` calls at once, alternating between the replicas."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: call(urls[i % len(urls)]), range(count)))


def assert_limited(responses: list[httpx.Response], allowed: int, success: int) -> None:
    codes = sorted(r.status_code for r in responses)
    assert codes == [success] * allowed + [429] * (len(responses) - allowed), codes
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "rate limit of" in refused.json()["detail"]


def rejections(stack, scope: str) -> float:
    """``inbox_rate_limit_rejections_total{scope}`` summed over the gateway replicas."""
    total = 0.0
    for gateway in replicas(stack, "gateway"):
        text = httpx.get(gateway.metrics_url, timeout=10).text
        for family in text_string_to_metric_families(text):
            total += sum(
                s.value
                for s in family.samples
                if s.name == "inbox_rate_limit_rejections_total" and s.labels["scope"] == scope
            )
    return total


def test_the_channel_limit_holds_across_replicas(limited) -> None:
    stack, urls = limited
    before = rejections(stack, "channel")
    responses = spread(
        urls,
        14,
        lambda url: httpx.post(
            f"{url}/api/v1/inbound/messages",
            json={"customer_id": "cust-flood", "body": "Where is my card?"},
            headers={"X-API-Key": stack.channel_key},
            timeout=30,
        ),
    )
    assert_limited(responses, allowed=10, success=202)
    assert rejections(stack, "channel") - before == 4


def test_the_operator_limit_holds_across_replicas(limited) -> None:
    stack, urls = limited
    inbox = InboxClient(stack)
    responses = spread(
        urls,
        12,
        lambda url: httpx.get(f"{url}/api/v1/conversations", headers=inbox.auth, timeout=30),
    )
    assert_limited(responses, allowed=8, success=200)


def test_login_attempts_are_limited_per_username(limited) -> None:
    stack, urls = limited
    responses = spread(
        urls,
        6,
        lambda url: httpx.post(
            f"{url}/api/v1/auth/login",
            json={"username": "mallory", "password": "guess"},
            timeout=30,
        ),
    )
    assert_limited(responses, allowed=4, success=401)


def test_a_flooding_websocket_is_throttled_then_closed(limited) -> None:
    stack, urls = limited
    token = InboxClient(stack).token

    async def flood() -> tuple[list[str], dict, int, str]:
        url = urls[0].replace("http://", "ws://") + "/ws"
        async with websockets.connect(url, subprotocols=ws_subprotocols(token)) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            async with asyncio.timeout(E2E_TIMEOUT_S):
                answers = []
                for _ in range(5):  # within the limit: answered
                    await ws.send(json.dumps({"type": "ping"}))
                    answers.append(json.loads(await ws.recv())["type"])
                await ws.send(json.dumps({"type": "ping"}))  # over it: dropped, with a reason
                error = json.loads(await ws.recv())
                try:
                    for _ in range(10):  # past twice the limit: closed
                        await ws.send(json.dumps({"type": "ping"}))
                    while True:
                        await ws.recv()
                except websockets.ConnectionClosed as closed:
                    return answers, error, closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("the socket stayed open")

    answers, error, code, reason = asyncio.run(flood())
    assert answers == ["pong"] * 5
    assert error["type"] == "error" and "too many messages" in error["detail"]
    assert (code, reason) == (1008, "message rate limit exceeded")
