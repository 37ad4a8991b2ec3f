"""The lifecycle events: a change says what it changes, without sentinels."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from inbox_common.events import (
    PUBSUB,
    TOPIC_CONVERSATION_CHANGED,
    TOPIC_SUMMARY_COMPLETED,
    TOPIC_SUMMARY_REQUESTED,
    TOPICS,
    ConversationChanged,
    SummaryCompleted,
    SummaryRequested,
    pubsub_for,
)
from pydantic import ValidationError


def change(**fields: object) -> dict:
    return {
        "request_id": str(uuid4()),
        "conversation_id": str(uuid4()),
        "changed_by": "demo",
        "changed_at": datetime.now(UTC).isoformat(),
        **fields,
    }


def test_new_topics_are_work_topics() -> None:
    for topic in (TOPIC_CONVERSATION_CHANGED, TOPIC_SUMMARY_REQUESTED, TOPIC_SUMMARY_COMPLETED):
        assert topic in TOPICS and pubsub_for(topic) == PUBSUB


@pytest.mark.parametrize(
    ("fields", "status", "assignee_set", "assignee"),
    [
        ({"status": "resolved"}, "resolved", False, None),
        ({"assignee_set": True, "assignee": "alice"}, None, True, "alice"),
        ({"assignee_set": True}, None, True, None),  # unassign
        ({"status": "pending", "assignee_set": True, "assignee": None}, "pending", True, None),
    ],
)
def test_a_change_names_what_it_changes(fields, status, assignee_set, assignee) -> None:
    event = ConversationChanged.model_validate(change(**fields))
    assert (event.status, event.assignee_set, event.assignee) == (status, assignee_set, assignee)


@pytest.mark.parametrize(
    "fields",
    [{}, {"assignee": "alice"}, {"status": "closed"}, {"status": "open", "assignee_set": "x"}],
)
def test_a_change_that_changes_nothing_or_is_ambiguous_is_refused(fields) -> None:
    with pytest.raises(ValidationError):
        ConversationChanged.model_validate(change(**fields))


def test_summary_request_is_bounded() -> None:
    lines = [{"role": "customer", "body": "hi"}] * 51
    with pytest.raises(ValidationError):
        SummaryRequested.model_validate(
            {
                "conversation_id": str(uuid4()),
                "resolution": 1,
                "messages": lines,
                "requested_by": "demo",
            }
        )


def test_summary_completed_is_final_only() -> None:
    with pytest.raises(ValidationError):
        SummaryCompleted.model_validate(
            {"conversation_id": str(uuid4()), "resolution": 1, "status": "processing"}
        )
