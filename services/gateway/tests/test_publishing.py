"""Asking messaging through Dapr: a query published, its answer read from the state store."""

import asyncio
import uuid

import pytest
from fastapi import HTTPException
from gateway.api.publishing import ask
from inbox_common.errors import TransientError
from pydantic import BaseModel


class Query(BaseModel):
    request_id: uuid.UUID


class FakeSidecar:
    """Publishes into a list; the answer appears under its key after ``answer_after_s``."""

    def __init__(self, answer_after_s: float | None, bus_down: bool = False) -> None:
        self.published: list[tuple[str, BaseModel]] = []
        self.values: dict[str, bytes] = {}
        self.answer_after_s = answer_after_s
        self.bus_down = bus_down

    async def publish(self, topic: str, event: BaseModel) -> None:
        if self.bus_down:
            raise TransientError("broker unreachable")
        self.published.append((topic, event))
        if self.answer_after_s is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(self.answer_after_s, self.values.__setitem__, "answer:1", b"{}")

    async def get_state(self, key: str) -> bytes | None:
        return self.values.get(key)


async def test_the_answer_is_read_once_written() -> None:
    sidecar = FakeSidecar(answer_after_s=0.1)
    query = Query(request_id=uuid.uuid4())
    raw = await ask(sidecar, "search.requested", query, "answer:1", 2, "search")  # type: ignore[arg-type] - a fake sidecar
    assert raw == b"{}" and sidecar.published == [("search.requested", query)]


async def test_no_answer_in_time_is_a_504_naming_the_request() -> None:
    query = Query(request_id=uuid.uuid4())
    with pytest.raises(HTTPException) as refusal:
        await ask(FakeSidecar(None), "search.requested", query, "answer:1", 0.2, "search")  # type: ignore[arg-type] - a fake sidecar
    assert refusal.value.status_code == 504
    assert f"search timed out: messaging did not answer request {query.request_id}" in str(
        refusal.value.detail
    )


async def test_a_bus_down_is_a_503_to_retry() -> None:
    query = Query(request_id=uuid.uuid4())
    with pytest.raises(HTTPException) as refusal:
        await ask(FakeSidecar(0, bus_down=True), "t", query, "answer:1", 1, "search")  # type: ignore[arg-type] - a fake sidecar
    assert refusal.value.status_code == 503 and refusal.value.headers == {"Retry-After": "2"}
