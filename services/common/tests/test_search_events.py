"""``search.requested``: a work topic, a bounded query, an aware timestamp."""

from datetime import datetime
from uuid import uuid4

import pytest
from inbox_common.events import (
    PUBSUB,
    TOPIC_SEARCH_REQUESTED,
    TOPICS,
    SearchRequested,
    pubsub_for,
)
from inbox_common.keys import search_key
from pydantic import ValidationError


def request(**fields: object) -> dict:
    return {"request_id": str(uuid4()), "query": "card", "requested_by": "demo", **fields}


def test_search_is_a_work_topic_with_its_own_key() -> None:
    assert TOPIC_SEARCH_REQUESTED in TOPICS and pubsub_for(TOPIC_SEARCH_REQUESTED) == PUBSUB
    request_id = uuid4()
    assert search_key(request_id) == f"search:{request_id}"


def test_the_query_is_trimmed_and_the_limit_defaults() -> None:
    event = SearchRequested.model_validate(request(query="  lost card  "))
    assert (event.query, event.limit, event.requested_at) == ("lost card", 20, None)


@pytest.mark.parametrize(
    "fields",
    [
        {"query": "   "},
        {"query": "x" * 201},
        {"limit": 0},
        {"limit": 51},
        {"requested_at": datetime(2026, 1, 1).isoformat()},  # naive: no time zone
        {"requested_by": ""},
    ],
)
def test_bad_requests_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        SearchRequested.model_validate(request(**fields))
