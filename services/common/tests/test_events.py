"""Event models: validation at the boundary and lenient evolution."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from inbox_common.events import (
    MAX_BODY_CHARS,
    AiCompleted,
    ConversationUpdated,
    InsightDelta,
    MessageCreated,
    MessageSubmitted,
    SearchRequested,
    SummaryCompleted,
    dead_letter_topic,
)
from pydantic import ValidationError


def submitted(**overrides: object) -> dict:
    return {
        "message_id": str(uuid4()),
        "conversation_id": str(uuid4()),
        "author_role": "customer",
        "author_id": "cust-1",
        "body": "Where is my card?",
        "submitted_at": datetime.now(UTC).isoformat(),
        **overrides,
    }


def test_submitted_round_trips_through_json() -> None:
    event = MessageSubmitted.model_validate(submitted())
    assert MessageSubmitted.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("fields", "mode"),
    [
        ({}, "suggest"),
        ({"assistant_mode": "off"}, "off"),
        ({"assistant_answers": True}, "answer"),  # as published before assistant_mode
        ({"assistant_answers": False}, "suggest"),
        ({"assistant_answers": True, "assistant_mode": "off"}, "off"),
    ],
)
def test_the_channels_assistant_mode_and_its_older_flag(fields: dict, mode: str) -> None:
    assert MessageSubmitted.model_validate(submitted(**fields)).assistant_mode == mode
    assert (
        MessageCreated.model_validate(
            submitted(**fields, seq=1, created_at=datetime.now(UTC).isoformat())
        ).assistant_mode
        == mode
    )


def test_unknown_fields_are_ignored_so_producers_can_evolve_first() -> None:
    assert MessageSubmitted.model_validate(submitted(new_field=1))


@pytest.mark.parametrize(
    "overrides",
    [
        {"message_id": "not-a-uuid"},
        {"author_role": "robot"},
        {"body": ""},
        {"body": "   "},
        {"body": "x" * (MAX_BODY_CHARS + 1)},
        {"author_id": ""},
        {"submitted_at": "yesterday"},
    ],
)
def test_submitted_rejects_bad_data(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        MessageSubmitted.model_validate(submitted(**overrides))


def test_created_requires_position_and_time() -> None:
    with pytest.raises(ValidationError):
        MessageCreated.model_validate(submitted())
    created = MessageCreated.model_validate(
        submitted(seq=1, created_at=datetime.now(UTC).isoformat())
    )
    assert created.seq == 1


def test_ai_completed_status_is_final_only() -> None:
    base = {"message_id": str(uuid4()), "conversation_id": str(uuid4())}
    assert AiCompleted.model_validate({**base, "status": "available"}).status == "available"
    with pytest.raises(ValidationError):
        AiCompleted.model_validate({**base, "status": "processing"})
    with pytest.raises(ValidationError):
        AiCompleted.model_validate({**base, "status": "unavailable", "error": "x" * 501})


def test_conversation_updated_versions_start_at_one() -> None:
    with pytest.raises(ValidationError):
        ConversationUpdated(conversation_id=uuid4(), version=0, reason="message.created")


def test_dead_letter_topic_name() -> None:
    assert dead_letter_topic("message.created") == "message.created.dead-letter"


UNSTORABLE = ["a\x00b", "\x00", "a\x1b[31m", "a\x08", "a\x0bb", "a\x1fb", "a\ud800b", "\udfff"]
"""C0 controls but tab and line breaks, and lone surrogates: PostgreSQL cannot keep NUL, UTF-8
cannot encode a lone surrogate."""
VALID = [
    "\u202eevil\u202c.exe",
    "a" + "\u200b" * 100 + "b",
    "x\ufeffy",
    "\U0001f469\u200d\U0001f467",
    "a\x7f\x85\x9bb",
    "a\ufdd0\uffff\U0010ffffb",
    "a\u2028b",
    "\\u0000",
]


@pytest.mark.parametrize("field", ["body", "author_id", "subject"])
@pytest.mark.parametrize("text", UNSTORABLE)
def test_text_a_store_cannot_keep_is_refused_naming_the_field(field: str, text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        MessageSubmitted.model_validate(submitted(**{field: text}))
    (error,) = refused.value.errors()
    assert error["loc"] == (field,)
    assert "U+" in error["msg"] or "unicode" in error["msg"]


@pytest.mark.parametrize("field", ["body", "author_id", "subject"])
@pytest.mark.parametrize("text", VALID)
def test_valid_unicode_is_kept_unchanged(field: str, text: str) -> None:
    event = MessageSubmitted.model_validate(submitted(**{field: text}))
    assert getattr(event, field) == text
    assert MessageSubmitted.model_validate_json(event.model_dump_json()) == event


def test_line_breaks_are_text_in_a_body_but_not_in_a_one_line_field() -> None:
    assert MessageSubmitted.model_validate(submitted(body="a\tb\r\nc")).body == "a\tb\r\nc"
    for field in ("author_id", "subject"):
        with pytest.raises(ValidationError, match="one line"):
            MessageSubmitted.model_validate(submitted(**{field: "a\nb"}))
    with pytest.raises(ValidationError, match="one line"):
        SearchRequested(request_id=uuid4(), query="card\tfee", requested_by="demo")


def test_the_refusal_names_the_character_and_where_it_is() -> None:
    with pytest.raises(ValidationError) as refused:
        MessageSubmitted.model_validate(submitted(body="hello\x00"))
    assert "control character U+0000 at position 5" in str(refused.value)


def test_model_output_is_cleaned_rather_than_refused() -> None:
    """Nobody can write model output again: what the store cannot keep is removed."""
    ids = {"message_id": uuid4(), "conversation_id": uuid4()}
    insight = AiCompleted(
        **ids, status="available", summary="a\x00b\x1b", suggested_reply="x\ud800y", error=None
    )
    assert (insight.summary, insight.suggested_reply) == ("ab", "x\ufffdy")
    assert InsightDelta(**ids, revision=1, seq=1, text="\x00hi").text == "hi"
    summary = SummaryCompleted(
        conversation_id=uuid4(), resolution=1, status="unavailable", error="bad \x00 output"
    )
    assert summary.error == "bad  output"
    assert AiCompleted(**ids, status="available", summary="\t\u202ekept\n").summary == (
        "\t\u202ekept\n"
    )
