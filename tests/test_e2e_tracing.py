"""One trace from the caller to the WebSocket push, collected by a real Jaeger (OTLP).

The caller's ``traceparent`` enters at the gateway; the services (FastAPI, gRPC to the sidecar,
psycopg, the Ollama call) and their daprd sidecars export to Jaeger; the trace must join every
hop: gateway -> messaging -> ai-worker (Ollama) -> messaging -> gateway's push.
"""

import asyncio
import json
import secrets

import httpx2 as httpx
import pytest
import websockets
from devstack.browser import log_in, open_conversation
from devstack.client import E2E_TIMEOUT_S, InboxClient, frame_events, wait_for
from devstack.fixtures import chromium, own_jaeger, start_stack
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


jaeger = own_jaeger("jaeger")


@pytest.fixture(scope="module", params=["redis", "kafka"])
def traced(request, output_dir, fake_ollama, jaeger):
    """A stack on two brokers whose services, sidecars and pages export spans to ``jaeger``."""
    broker = request.param
    stack = start_stack(
        output_dir,
        f"tracing-{broker}",
        fake_ollama,
        broker=broker,
        otlp_endpoint=jaeger.otlp_http_endpoint,
        env=jaeger.browser_env,
    )
    try:
        yield stack, InboxClient(stack)
    finally:
        stack.stop()


def test_one_trace_from_the_caller_to_the_push(traced, jaeger) -> None:
    stack, inbox = traced
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)

    async def scenario() -> dict:
        async with websockets.connect(inbox.ws_url, subprotocols=inbox.ws_subprotocols) as ws:
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
                        and push["type"] == "conversation.updated"
                        and push["conversation"]["latest_insight_status"] == "available"
                    ):
                        return push

    push = asyncio.run(scenario())
    assert push["trace_id"] == trace_id  # the push names the trace it travelled in

    def complete() -> tuple | None:
        """The trace once both chains reach the caller (services export in batches)."""
        found = jaeger.trace(trace_id) or {"spans": []}
        spans = {span["spanID"]: span for span in found["spans"]}
        # two pushes travel in this trace: the stored message, then its insight (the later)
        pushes = [
            s for s in spans.values() if s["operationName"] == "websocket push conversation.updated"
        ]
        chats = llm_calls(spans)
        if len(pushes) != 2 or len(chats) != 2:
            return None
        push_span = max(pushes, key=lambda s: s["startTime"])
        chains = ancestors(push_span, spans), ancestors(chats[-1], spans)
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
    hops = describe(found, spans, reversed(push_chain[:-1]))
    print("trace", trace_id, "from the caller to the push:\n  " + "\n  ".join(hops))
    assert len(push_chain) > 12, hops


def llm_calls(spans: dict) -> list[dict]:
    """The Ollama calls, oldest first: the tool round (search_knowledge_base offered), then
    the streamed insight."""
    chats = [s for s in spans.values() if s["operationName"] == "chat fake-insight:1b"]
    return sorted(chats, key=lambda s: s["startTime"])


def parent(span: dict) -> str | None:
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def ancestors(span: dict, spans: dict) -> list[str | None]:
    """Parent ids up to the root; the last item is the first id outside the trace (the
    caller's span), or ``None`` when the root has no parent."""
    chain, current = [], parent(span)
    while current in spans:
        chain.append(current)
        current = parent(spans[current])
    chain.append(current)
    return chain


def describe(found: dict, spans: dict, ids) -> list[str]:
    """``service: span (duration)`` for each span id."""
    return [
        f"{found['processes'][spans[i]['processID']]['serviceName']}: "
        f"{spans[i]['operationName']} ({spans[i]['duration'] / 1000:.1f} ms)"
        for i in ids
    ]


BROWSER = "support-inbox-frontend"


def browser_spans(jaeger, name: str) -> list[dict]:
    """Root spans called ``name`` recorded by the page, with the trace each belongs to."""
    found = []
    for trace in jaeger.traces(BROWSER):
        for span in trace["spans"]:
            if span["operationName"] == name and parent(span) is None:
                found.append({**span, "trace": trace})
    return found


def action_reaches(jaeger, action: str, target: tuple[str, str], conversation_id: str) -> bool:
    """Some ``action`` span of the page (on this conversation, when it names one) is an
    ancestor of a ``(service, span name)`` ``target`` span."""
    for root in browser_spans(jaeger, action):
        tags = {t["key"]: t["value"] for t in root.get("tags", [])}
        if tags.get("inbox.conversation_id", conversation_id) != conversation_id:
            continue
        trace = root["trace"]
        spans = {span["spanID"]: span for span in trace["spans"]}
        for span in spans.values():
            service = trace["processes"][span["processID"]]["serviceName"]
            if (service, span["operationName"]) == target and root["spanID"] in ancestors(
                span, spans
            ):
                return True
    return False


def click_trace(jaeger, trace_id: str) -> tuple | None:
    """The click's trace once both chains reach the click (spans arrive in batches)."""
    found = jaeger.trace(trace_id) or {"spans": []}
    spans = {span["spanID"]: span for span in found["spans"]}
    clicks = [s for s in spans.values() if s["operationName"] == "regenerate insight"]
    chats = llm_calls(spans)
    pushes = [
        s for s in spans.values() if s["operationName"] == "websocket push conversation.updated"
    ]
    if len(clicks) != 1 or len(chats) != 2 or len(pushes) != 2:
        return None
    push = max(pushes, key=lambda s: s["startTime"])
    chains = ancestors(chats[-1], spans), ancestors(push, spans)
    if any(chain[-2:] != [clicks[0]["spanID"], None] for chain in chains):
        return None
    return found, spans, *chains


def operate(browser, stack, jaeger, conversation_id: str, message_id: str) -> tuple:
    """Log in, open the conversation, send a reply, regenerate the insight; the click's
    complete trace from Jaeger (see :func:`click_trace`)."""
    context = browser.new_context(base_url=stack.gateway_url)
    page = context.new_page()
    page.set_default_timeout(E2E_TIMEOUT_S * 1000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    pushes: list[dict] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda frame: pushes.extend(frame_events(frame))),
    )
    try:
        log_in(page, stack)
        expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
        open_conversation(page, conversation_id)
        panel = page.locator(f'[data-message-id="{message_id}"] .ai-panel')
        expect(panel).to_have_attribute("data-status", "available")

        page.fill("#reply-body", "Sorry about that, I am looking into the double charge.")
        page.click("#reply-send")
        expect(page.locator('#messages [data-author-role="operator"]:not(.pending)')).to_have_count(
            1
        )
        panel.locator(".regenerate-insight").click()
        expect(panel.locator(".ai-meta")).to_contain_text("revision 2")
        link = panel.locator(".ai-trace-link")
        trace_id = link.get_attribute("data-trace-id")
        assert link.get_attribute("href") == f"{jaeger.ui_url}/api/traces/{trace_id}"
        completed = [
            p
            for p in pushes
            if p.get("conversation_id") == conversation_id and p.get("reason") == "ai.completed"
        ]
        assert completed[-1]["trace_id"] == trace_id  # the push and the AI panel name one trace
        # the page stays open: its spans leave in batches (every 5 s), the fetch span last
        found, spans, chat_chain, push_chain = wait_for(
            lambda: click_trace(jaeger, trace_id), 60, "the click's unbroken trace in Jaeger", 1
        )
    finally:
        context.close()
    assert problems == [], problems
    return trace_id, found, spans, chat_chain, push_chain


def test_one_trace_from_a_browser_click_to_the_llm_and_back(traced, jaeger) -> None:
    """In Chromium an operator logs in, opens a conversation, sends a reply and asks for a
    fresh insight; the click's trace reaches the Ollama call and comes back as the push."""
    stack, inbox = traced
    accepted = inbox.send_customer("I was charged twice for one card payment.")
    conversation_id, message_id = accepted["conversation_id"], accepted["message_id"]
    inbox.wait_insight(conversation_id, message_id)

    with chromium() as browser:
        trace_id, found, spans, chat_chain, push_chain = operate(
            browser, stack, jaeger, conversation_id, message_id
        )
    services = {found["processes"][s["processID"]]["serviceName"] for s in spans.values()}
    assert {BROWSER, "gateway", "messaging", "ai-worker"} <= services
    (tool,) = [s for s in spans.values() if s["operationName"].startswith("execute_tool")]
    assert set(ancestors(tool, spans)) >= set(chat_chain)  # the search ran in the same handler
    chat_id = llm_calls(spans)[-1]["spanID"]
    to_llm = [*reversed(chat_chain[:-1]), chat_id]
    push_id = max(
        (i for i, s in spans.items() if s["operationName"].startswith("websocket push")),
        key=lambda i: spans[i]["startTime"],
    )
    back = [*(i for i in reversed(push_chain[:-1]) if i not in chat_chain), push_id]
    print(f"trace {trace_id} from the click to the Ollama call:")
    print("  " + "\n  ".join(describe(found, spans, to_llm)))
    print("and on to the push:\n  " + "\n  ".join(describe(found, spans, back)))

    # the other actions are traces of their own; each reaches the services through its fetch
    for action, reaches in [
        ("log in", ("gateway", "POST /api/v1/auth/login")),
        ("open conversation", ("gateway", "GET /api/v1/conversations/{conversation_id}")),
        ("send reply", ("messaging", "process messages.submitted")),
    ]:
        wait_for(
            lambda a=action, r=reaches: action_reaches(jaeger, a, r, conversation_id),
            30,
            f"the {action!r} trace reaching {reaches}",
        )
    assert browser_spans(jaeger, "documentLoad")
