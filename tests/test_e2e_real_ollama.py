"""The whole inbox on each broker with the real ``ollama serve`` and the test model.

Per broker: a stack of one replica of each service on the session's Ollama server. An operator
in headless Chromium sees the reply streamed as ``insight.delta`` pushes, then the schema-valid
insight, its intent from the learned intent step (the model's own would be noise). (A full
queue, HTTP 503 from the real server, is provoked in ``test_integration_ollama_real.py``, where
requests can be made to meet a cold server at once; per broker, the stand-in's ``busy`` mode
answers that 503 in ``test_e2e_pipeline.py``.)
"""

from collections.abc import Iterator

import pytest
from devstack.browser import log_in, open_conversation
from devstack.client import InboxClient, frame_events
from devstack.dataset import write_training_examples
from devstack.fixtures import RealOllama, start_matrix_stack
from devstack.stack import Stack
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


@pytest.fixture(scope="module")
def real(real_ollama: RealOllama) -> RealOllama:
    return real_ollama


@pytest.fixture(scope="module")
def stack(output_dir, real: RealOllama, broker: str) -> Iterator[Stack]:
    running = start_matrix_stack(
        output_dir,
        f"real-ollama-{broker}",
        real,
        broker,
        replicas=1,
        # a delta per 20 ms: the test model writes a reply in a few hundred ms
        env={
            "AI_STREAM_INTERVAL_MS": "20",
            "OLLAMA_TIMEOUT_S": "30",
            "AI_INTENT_EXAMPLES": str(
                write_training_examples(output_dir / "intent-examples.jsonl")
            ),
        },
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


def test_the_reply_streams_to_the_page_then_the_insight(
    page: Page, stack: Stack, inbox: InboxClient, real: RealOllama
) -> None:
    pushes: list[dict] = []
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived",
            lambda frame: pushes.extend(frame_events(frame)) if isinstance(frame, str) else None,
        ),
    )
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
    accepted = inbox.send_customer("My card has not arrived yet, I ordered it two weeks ago.")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    reply = panel.locator(".ai-suggested-reply").inner_text()
    # the test model's random weights never write this: the intent step trained on the
    # demo set's training split does
    expect(panel.locator(".intent-badge")).to_have_text("card_arrival")
    assert reply.strip()
    assert panel.locator(".ai-summary").inner_text().strip()

    deltas = [
        p["text"]
        for p in pushes
        if p.get("type") == "insight.delta"
        and p.get("conversation_id") == accepted["conversation_id"]
    ]
    assert deltas, "no insight.delta reached the page"
    assert all(reply.startswith(text.strip()) for text in deltas), (deltas, reply)
    insight = inbox.conversation(accepted["conversation_id"])["messages"][0]["insight"]
    assert insight["model"] == real.model and insight["suggested_reply"] == reply.strip()
