"""Event models: validation at the boundary and lenient evolution."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from inbox_common.events import (
    MAX_BODY_CHARS,
    AiCompleted,
    ConversationUpdated,
    MessageCreated,
    MessageSubmitted,
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
