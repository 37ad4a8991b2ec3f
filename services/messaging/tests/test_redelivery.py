"""The insight watchdog's pure parts: the waits, the events it rebuilds, its settings."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from inbox_common.events import (
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_MESSAGE_CREATED,
    AnalysisRequested,
    MessageCreated,
)
from messaging import redelivery
from messaging.redelivery import Stale, abandon_reason, wait_s
from messaging.settings import Settings
from pydantic import ValidationError

MIGRATIONS = Path(redelivery.__file__).parent / "migrations"


def stale(revision: int, requested_by: str | None = None) -> Stale:
    return Stale(
        message_id=uuid.uuid4(),
        revision=revision,
        redeliveries=0,
        requested_by=requested_by,
        conversation_id=uuid.uuid4(),
        seq=3,
        author_id="cust-1",
        body="Where is my card?",
        submitted_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        created_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        subject="Card",
    )


def test_the_wait_doubles_and_is_capped() -> None:
    assert [wait_s(120, n) for n in range(4)] == [120, 240, 480, 960]
    assert wait_s(120, 6) == wait_s(120, 50) == 120 * 64


def test_revision_one_is_asked_for_again_with_message_created() -> None:
    row = stale(1)
    topic, event = row.request()
    assert topic == TOPIC_MESSAGE_CREATED and type(event) is MessageCreated
    assert (event.message_id, event.conversation_id, event.seq) == (
        row.message_id,
        row.conversation_id,
        3,
    )
    assert event.author_role == "customer" and event.body == row.body


def test_a_later_revision_is_asked_for_again_with_analysis_requested() -> None:
    row = stale(3, requested_by="demo")
    topic, event = row.request()
    assert topic == TOPIC_ANALYSIS_REQUESTED and isinstance(event, AnalysisRequested)
    assert (event.revision, event.requested_by, event.message_id) == (3, "demo", row.message_id)


def test_the_abandon_reason_says_what_to_do() -> None:
    assert "5 re-requests" in abandon_reason(5) and "Regenerate" in abandon_reason(5)


BASE = {"database_url": "postgresql://x@y/z", "environment": "test"}


def test_settings_defaults_and_bounds() -> None:
    settings = Settings(**BASE)
    assert settings.insight_redelivery_interval_s == 15
    assert settings.insight_redeliver_after_s == 120
    assert settings.insight_max_redeliveries == 5
    assert settings.insight_redelivery_batch_size == 100
    for bad in (
        {"insight_redelivery_interval_s": 0},
        {"insight_redeliver_after_s": 0},
        {"insight_max_redeliveries": -1},
        {"insight_redelivery_batch_size": 0},
    ):
        with pytest.raises(ValidationError):
            Settings(**BASE, **bad)


def test_the_migration_follows_the_newest_and_rolls_back() -> None:
    forward = (MIGRATIONS / "0009_insight_redelivery.sql").read_text()
    back = (MIGRATIONS / "0009_insight_redelivery.rollback.sql").read_text()
    assert forward.startswith("-- depends: 0008_dead_letters_as_text\n")
    for column in ("requested_at", "redeliveries"):
        assert f"ADD COLUMN {column}" in forward and f"DROP COLUMN {column}" in back
