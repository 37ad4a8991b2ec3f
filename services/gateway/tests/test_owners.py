"""Who a conversation belongs to (:mod:`gateway.core.owners`), against an in-memory stand-in
for the sidecar that keeps ETags the way Dapr's first-write-wins concurrency does."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from gateway.core.owners import NotTheOwner, claim
from inbox_common.errors import TransientError
from inbox_common.keys import conversation_key, owner_key
from inbox_common.read_models import Conversation, ConversationSummary


class FakeSidecar:
    """State with an ETag per write; each call yields to the event loop, so racers interleave."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        self.always_refuse = False

    async def get_state(self, key: str) -> bytes | None:
        value, _ = await self.get_state_and_etag(key)
        return value

    async def get_state_and_etag(self, key: str) -> tuple[bytes | None, str | None]:
        await asyncio.sleep(0)
        value, etag = self.values.get(key, (None, None))
        return (value.encode() if value is not None else None), etag

    async def try_save_state(self, key: str, value: str, etag: str | None) -> bool:
        await asyncio.sleep(0)
        current = self.values.get(key)
        if self.always_refuse or (current[1] if current else None) != etag:
            return False
        self.values[key] = (value, uuid.uuid4().hex)
        return True


def read_model(conversation_id: uuid.UUID, customer_id: str) -> str:
    now = datetime.now(UTC)
    summary = ConversationSummary(
        conversation_id=conversation_id,
        customer_id=customer_id,
        last_message_preview="hi",
        last_author_role="customer",
        last_activity_at=now,
        message_count=1,
        version=1,
        awaiting_reply=True,
    )
    return Conversation(
        conversation_id=conversation_id,
        customer_id=customer_id,
        created_at=now,
        last_activity_at=now,
        version=1,
        summary=summary,
        messages=[],
    ).model_dump_json()


def test_the_first_customer_claims_and_only_they_continue() -> None:
    sidecar, cid = FakeSidecar(), uuid.uuid4()
    asyncio.run(claim(sidecar, cid, "alice"))
    asyncio.run(claim(sidecar, cid, "alice"))  # a continuation, or a resend
    with pytest.raises(NotTheOwner, match="another customer"):
        asyncio.run(claim(sidecar, cid, "mallory"))
    assert json.loads(sidecar.values[owner_key(cid)][0]) == {"customer_id": "alice"}


def test_of_two_racing_customers_exactly_one_wins() -> None:
    async def race() -> list[object]:
        sidecar, cid = FakeSidecar(), uuid.uuid4()
        return await asyncio.gather(
            *(claim(sidecar, cid, who) for who in ("red", "blue", "red", "blue")),
            return_exceptions=True,
        )

    for _ in range(20):
        outcomes = asyncio.run(race())
        refused = [o for o in outcomes if isinstance(o, NotTheOwner)]
        assert len(refused) == 2 and outcomes.count(None) == 2


def test_a_conversation_without_a_claim_belongs_to_its_read_model_customer() -> None:
    sidecar, cid = FakeSidecar(), uuid.uuid4()
    sidecar.values[conversation_key(cid)] = (read_model(cid, "old-customer"), "e1")
    with pytest.raises(NotTheOwner):
        asyncio.run(claim(sidecar, cid, "mallory"))
    assert owner_key(cid) not in sidecar.values
    asyncio.run(claim(sidecar, cid, "old-customer"))
    assert json.loads(sidecar.values[owner_key(cid)][0]) == {"customer_id": "old-customer"}


def test_an_unreadable_claim_is_replaced() -> None:
    sidecar, cid = FakeSidecar(), uuid.uuid4()
    sidecar.values[owner_key(cid)] = ("not json", "e1")
    asyncio.run(claim(sidecar, cid, "alice"))
    assert json.loads(sidecar.values[owner_key(cid)][0]) == {"customer_id": "alice"}


def test_a_store_that_keeps_refusing_is_transient() -> None:
    sidecar = FakeSidecar()
    sidecar.always_refuse = True
    with pytest.raises(TransientError, match="retry shortly"):
        asyncio.run(claim(sidecar, uuid.uuid4(), "alice"))
