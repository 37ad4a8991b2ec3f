"""One trace from the caller to the WebSocket push, collected by a real Jaeger (OTLP).

The caller's ``traceparent`` enters at the gateway; the services (FastAPI, gRPC to the sidecar,
psycopg, the Ollama call) and their daprd sidecars export to Jaeger; the trace must join every
hop: gateway -> messaging -> ai-worker (Ollama) -> messaging -> gateway's push.
"""

import asyncio
import json
import secrets
import shutil

import httpx2 as httpx
import pytest
import websockets
from devstack.fixtures import E2E_TIMEOUT_S, InboxClient, start_stack, wait_for
from devstack.jaeger import Jaeger

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def jaeger(output_dir):
    run_dir = output_dir / "jaeger"
    shutil.rmtree(run_dir, ignore_errors=True)
    server = Jaeger(run_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["redis", "kafka"])
def traced(request, output_dir, fake_ollama, jaeger):
    """A stack on two brokers whose services and sidecars export spans to ``jaeger``."""
    broker = request.param
    stack = start_stack(
        output_dir,
        f"tracing-{broker}",
        fake_ollama,
        broker=broker,
        otlp_endpoint=jaeger.otlp_http_endpoint,
    )
    try:
        yield stack, InboxClient(stack)
    finally:
        stack.stop()


def test_one_trace_from_the_caller_to_the_push(traced, jaeger) -> None:
    stack, inbox = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)

    async def scenario() -> dict:
        async with websockets.connect(inbox.ws_url) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            response = await asyncio.to_thread(
                httpx.post,
                f"{stack.gateway_url}/api/v1/inbound/messages",
                json={"customer_id": "cust-traced", "body": "My card has not arrived yet."},
                headers={
                    "X-API-Key": stack.channel_key,
                    "traceparent": f"00-{trace_id}-{caller_span}-01",
                },
            )
            assert response.status_code == 202, response.text
            conversation_id = response.json()["conversation_id"]
            async with asyncio.timeout(E2E_TIMEOUT_S):
                while True:
                    push = json.loads(await ws.recv())
                    if (
                        push.get("conversation_id") == conversation_id
                        and push["conversation"]["latest_insight_status"] == "available"
                    ):
                        return push

    push = asyncio.run(scenario())
    assert push["trace_id"] == trace_id  # the push names the trace it travelled in

    def parent(span: dict) -> str | None:
        refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None

    def ancestors(span: dict, spans: dict) -> list[str]:
        chain, current = [], parent(span)
        while current in spans:
            chain.append(current)
            current = parent(spans[current])
        chain.append(current)  # the first id outside the trace: the caller's span
        return chain

    def complete() -> tuple | None:
        """The trace once both chains reach the caller (services export in batches)."""
        found = jaeger.trace(trace_id) or {"spans": []}
        spans = {span["spanID"]: span for span in found["spans"]}
        # two pushes travel in this trace: the stored message, then its insight (the later)
        pushes = [
            s for s in spans.values() if s["operationName"] == "websocket push conversation.updated"
        ]
        chats = [s for s in spans.values() if s["operationName"] == "chat fake-insight:1b"]
        if len(pushes) != 2 or len(chats) != 1:
            return None
        push_span = max(pushes, key=lambda s: s["startTime"])
        chains = ancestors(push_span, spans), ancestors(chats[0], spans)
        if any(chain[-1] != caller_span for chain in chains):
            return None
        return found, spans, *chains

    found, spans, push_chain, chat_chain = wait_for(
        complete, 60, "an unbroken trace in Jaeger", interval_s=1
    )
    services = {found["processes"][s["processID"]]["serviceName"] for s in spans.values()}
    assert {"gateway", "messaging", "ai-worker"} <= services
    # the push descends from the ai-worker's handling of the message, which made the LLM call
    assert set(chat_chain[:-1]) & set(push_chain[:-1])
    hops = [
        f"{found['processes'][spans[i]['processID']]['serviceName']}: "
        f"{spans[i]['operationName']} ({spans[i]['duration'] / 1000:.1f} ms)"
        for i in reversed(push_chain[:-1])
    ]
    print("trace", trace_id, "from the caller to the push:\n  " + "\n  ".join(hops))
    assert len(push_chain) > 12, hops
