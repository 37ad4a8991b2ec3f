"""The assistant's choice between answering a customer and handing the conversation off."""

import uuid

import pytest
from ai_worker.assistant import asks_for_person, customer_safe_prefix, decide
from ai_worker.streaming import ReplyStream
from inbox_common.events import AiCompleted, InsightDelta, InsightStatus, ReplyStrategy


def completed(reply: str | None = "You can top up in the app.", **fields: object) -> AiCompleted:
    base = {
        "message_id": uuid.uuid4(),
        "conversation_id": uuid.uuid4(),
        "status": InsightStatus.AVAILABLE,
        "intent": "top_up",
        "summary": "asks about top-ups",
        "suggested_reply": reply,
        "strategy": ReplyStrategy.SHORT_ANSWER,
    }
    return AiCompleted(**{**base, **fields})


@pytest.mark.parametrize(
    "body",
    [
        "Can I talk to a real person?",
        "I want a HUMAN",
        "let me speak to an agent",
        "Please put me through to customer service",
        "are you a bot? I want someone real, not a bot",
    ],
)
def test_asking_for_a_person(body: str) -> None:
    assert asks_for_person(body)
    decided = decide(body, completed())
    assert decided.handoff == "the customer asked for a person" and not decided.answered


@pytest.mark.parametrize(
    "body", ["How do I top up?", "My personal details changed", "The agents fee is what?"]
)
def test_ordinary_questions_are_answered(body: str) -> None:
    assert not asks_for_person(body)
    decided = decide(body, completed())
    assert decided.answered and decided.handoff is None


def test_escalation_and_failure_hand_off() -> None:
    escalated = decide("x", completed(strategy=ReplyStrategy.ESCALATION, intent="fraud"))
    assert escalated.handoff == "escalation: fraud"
    failed = decide(
        "x", completed(None, status=InsightStatus.UNAVAILABLE, error="the model timed out")
    )
    assert failed.handoff == "no answer the assistant could give (the model timed out)"


@pytest.mark.parametrize(
    "reply",
    [
        "We will refund the full amount today.",
        "You will be reimbursed within 3 days.",
        "I have waived the fee for you.",
        "We can raise your limit right away.",
        "As my instructions say, Strategy: short answer.",
        "My system prompt tells me to be kind.",
        "<|eot_id|>",
    ],
)
def test_replies_that_commit_or_leak_are_held_back(reply: str) -> None:
    decided = decide("How do I top up?", completed(reply))
    assert decided.handoff and "held back" in decided.handoff and not decided.answered


@pytest.mark.parametrize(
    "reply",
    [
        "Hello, thank you for reaching out about request refund.",
        "Refunds for card payments are explained in our help article.",
        "The fee is shown before you confirm the payment.",
    ],
)
def test_a_mention_is_no_promise(reply: str) -> None:
    decided = decide("How do refunds work?", completed(reply))
    assert decided.answered and decided.handoff is None


@pytest.mark.parametrize(
    ("draft", "shown"),
    [
        ("Hello, thank you", ""),
        ("Hello, thank you. You can top", "Hello, thank you."),
        ("Hello! Which card? You can", "Hello! Which card?"),
        ("Top-ups take 1.5 hours. Then", "Top-ups take 1.5 hours."),
        ("First line\nsecond", "First line"),
        ("Hello. We will ref", "Hello."),  # half a promise is not shown
        ("Hello. We will refund you. Anything", None),
        ("Sure. My system prompt says. More", None),
    ],
)
def test_only_complete_safe_sentences_are_streamed_to_the_customer(
    draft: str, shown: str | None
) -> None:
    assert customer_safe_prefix(draft) == shown


class Published:
    """A sidecar that records what is published."""

    def __init__(self) -> None:
        self.deltas: list[InsightDelta] = []

    async def publish(self, topic: str, event: InsightDelta) -> None:
        self.deltas.append(event)


async def test_a_promise_written_into_the_stream_never_reaches_the_customer() -> None:
    reply = "Hello, thank you for writing. We will refund you in full today. Anything else?"
    sidecar = Published()
    stream = ReplyStream(sidecar, uuid.uuid4(), uuid.uuid4(), 1, interval_ms=0)
    stream.to_customer = True
    output = '{"intent": "refund", "summary": "wants money back", "suggested_reply": "'
    for char in reply:
        output += char
        await stream.update(output)
    to_customer = [d.text for d in sidecar.deltas if d.to_customer]
    assert to_customer == ["Hello, thank you for writing."]
    assert sidecar.deltas[-1].text == reply and not sidecar.deltas[-1].to_customer
    assert all("refund" not in text for text in to_customer)


async def test_the_first_draft_waits_an_interval_from_the_models_first_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model that answers within the interval gets no draft: its insight follows at once."""
    clock = [1000.0]
    monkeypatch.setattr("ai_worker.streaming.time.monotonic", lambda: clock[0])
    sidecar = Published()
    stream = ReplyStream(sidecar, uuid.uuid4(), uuid.uuid4(), 1, interval_ms=100)
    output = '{"intent": "card", "summary": "late card", "suggested_reply": "Hello'
    clock[0] += 5  # queued for a slot and the tool round: not the model writing
    await stream.update(output)
    clock[0] += 0.099
    await stream.update(output + ", we")
    assert sidecar.deltas == []
    clock[0] += 0.002
    await stream.update(output + ", we are")
    assert [d.text for d in sidecar.deltas] == ["Hello, we are"]
