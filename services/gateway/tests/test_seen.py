"""Per-operator seen versions (:mod:`gateway.core.seen`) and waiting for a state key
(:mod:`gateway.core.polling`), against an in-memory stand-in for the sidecar that keeps
ETags the way Dapr's first-write-wins concurrency does."""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from gateway.core.polling import wait_for_state
from gateway.core.seen import (
    SeenStore,
    inbox_unread_count,
    is_unread,
    parse_seen,
    unread_count,
    with_mark,
)
from inbox_common.keys import seen_key
from inbox_common.read_models import ConversationSummary, Inbox
from inbox_common.sidecar import StateContended


class FakeSidecar:
    """``get_state_and_etag`` / ``try_save_state`` with an ETag per write; every read and
    write yields to the event loop, so concurrent marks really interleave."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        self.refusals = 0
        self.always_refuse = False

    async def get_state(self, key: str) -> bytes | None:
        value, _ = await self.get_state_and_etag(key)
        return value

    async def get_state_and_etag(self, key: str) -> tuple[bytes | None, str | None]:
        await asyncio.sleep(0)
        if key not in self.values:
            return None, None
        value, etag = self.values[key]
        return value.encode(), etag

    async def try_save_state(self, key: str, value: str, etag: str | None, ttl_s=None) -> bool:  # noqa: ANN001
        await asyncio.sleep(0)
        current = self.values.get(key)
        if self.always_refuse or (current[1] if current else None) != etag:
            self.refusals += 1
            return False
        self.values[key] = (value, uuid.uuid4().hex)
        return True


def summary(version: int, conversation_id: uuid.UUID | None = None) -> ConversationSummary:
    return ConversationSummary(
        conversation_id=conversation_id or uuid.uuid4(),
        customer_id="cust-1",
        last_message_preview="hello",
        last_author_role="customer",
        last_activity_at=datetime.now(UTC),
        message_count=1,
        version=version,
        awaiting_reply=True,
    )


def test_unread_is_a_version_above_the_seen_one() -> None:
    seen_at_2, never_seen = summary(2), summary(1)
    seen = {str(seen_at_2.conversation_id): 2}
    assert not is_unread(seen_at_2, seen)
    assert is_unread(never_seen, seen)
    assert is_unread(summary(3, seen_at_2.conversation_id), seen)
    assert unread_count([seen_at_2, never_seen, summary(5)], seen) == 2


def test_the_unread_count_covers_conversations_older_than_the_list() -> None:
    seen_at_2, changed_since, never_seen = summary(2), summary(4), summary(1)
    older_seen = str(uuid.uuid4())
    seen = {str(seen_at_2.conversation_id): 2, str(changed_since.conversation_id): 3, older_seen: 7}
    listed = [seen_at_2, changed_since, never_seen]
    # 3 listed (2 unread) and 100 older, of which 1 was seen: 2 + 99
    assert inbox_unread_count(Inbox(items=listed, total=103), seen) == 101
    assert inbox_unread_count(Inbox(items=listed, total=3), seen) == 2
    assert inbox_unread_count(Inbox(items=[], total=0), seen) == 0


def test_marks_never_go_backwards_and_keep_the_newest() -> None:
    assert with_mark({"a": 3}, "a", 2, bound=10) is None
    assert with_mark({"a": 3}, "a", 3, bound=10) is None
    assert with_mark({"a": 3, "b": 1}, "a", 4, bound=10) == {"b": 1, "a": 4}
    # the mark just made is the newest; the oldest marks go first
    assert list(with_mark({"a": 1, "b": 1, "c": 1}, "a", 2, bound=2)) == ["c", "a"]


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b'"text"'])
def test_an_unreadable_value_counts_as_nothing_seen(raw: bytes | None) -> None:
    assert parse_seen(raw) == {}


def test_entries_that_are_not_versions_are_ignored() -> None:
    assert parse_seen(b'{"a": 2, "b": "3", "c": true, "d": null}') == {"a": 2}


async def test_concurrent_marks_from_two_tabs_are_all_kept() -> None:
    sidecar = FakeSidecar()
    store = SeenStore(sidecar, max_entries=100)  # type: ignore[arg-type]
    ids = [str(uuid.uuid4()) for _ in range(12)]
    results = await asyncio.gather(*(store.mark("demo", i, 1) for i in ids))
    assert all(results)
    assert sidecar.refusals > 0  # they did race
    assert await store.read("demo") == dict.fromkeys(ids, 1)
    assert not await store.mark("demo", ids[0], 1)  # seen at that version already
    assert seen_key("demo") in sidecar.values
    assert await store.read("someone-else") == {}


async def test_the_map_is_bounded_to_the_newest_marks() -> None:
    sidecar = FakeSidecar()
    store = SeenStore(sidecar, max_entries=10)  # type: ignore[arg-type]
    ids = [str(uuid.uuid4()) for _ in range(15)]
    for i in ids:
        await store.mark("demo", i, 1)
    stored = json.loads(sidecar.values[seen_key("demo")][0])
    assert list(stored) == ids[5:]


async def test_a_mark_that_loses_every_race_is_a_transient_error() -> None:
    sidecar = FakeSidecar()
    sidecar.always_refuse = True
    with pytest.raises(StateContended, match="operator:demo:seen kept changing"):
        await SeenStore(sidecar, max_entries=10).mark("demo", "a", 1)  # type: ignore[arg-type]


async def test_waiting_for_a_key_returns_it_once_written() -> None:
    sidecar = FakeSidecar()

    async def answer_later() -> None:
        await asyncio.sleep(0.12)
        await sidecar.try_save_state("search:1", '{"items": []}', None)

    task = asyncio.create_task(answer_later())
    started = time.monotonic()
    value = await wait_for_state(sidecar, "search:1", timeout_s=2)  # type: ignore[arg-type]
    waited_s = time.monotonic() - started
    await task
    assert value == b'{"items": []}'
    assert 0.1 <= waited_s < 0.3  # read again within 100 ms of the write


async def test_waiting_gives_up_after_the_timeout() -> None:
    started = time.monotonic()
    value = await wait_for_state(FakeSidecar(), "search:2", timeout_s=0.3)  # type: ignore[arg-type]
    assert value is None
    assert 0.3 <= time.monotonic() - started < 0.5
