"""Typed access to the Dapr sidecar: publish events, read and write read models.

Uses the Dapr Python SDK's asyncio gRPC client, which finds the sidecar through
``DAPR_GRPC_ENDPOINT`` / ``DAPR_GRPC_PORT`` and sends ``DAPR_API_TOKEN`` itself.
Every sidecar failure surfaces as :class:`~inbox_common.errors.TransientError`.
"""

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Protocol, TypeVar

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions
from dapr.clients.health import DaprHealth
from grpc import StatusCode
from pydantic import BaseModel

from inbox_common.errors import TransientError
from inbox_common.events import STATE_STORE, pubsub_for

log = logging.getLogger(__name__)

T = TypeVar("T")


class Sidecar:
    """One service's connection to its own daprd.

    Construct it anywhere; in the app's lifespan, ``async with sidecar:`` starts and closes it.
    """

    def __init__(self) -> None:
        self._client: DaprClient | None = None

    async def start(self) -> None:
        """Connect, waiting up to ``DAPR_HEALTH_TIMEOUT`` s (SDK default 60) for the sidecar.

        Raises:
            DaprInternalError: the sidecar did not become healthy in time.
        """
        # The SDK's health wait is a blocking loop: run it in a thread, then build the client
        # (whose gRPC channel needs this event loop) once the sidecar is up.
        await asyncio.to_thread(DaprHealth.wait_for_sidecar)
        self._client = DaprClient()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def __aenter__(self) -> "Sidecar":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> DaprClient:
        if self._client is None:
            raise TransientError("the Dapr sidecar client is not started")
        return self._client

    async def publish(self, topic: str, event: BaseModel) -> None:
        """Publish ``event`` as JSON CloudEvent data on ``topic`` of its component
        (:func:`~inbox_common.events.pubsub_for`).

        Raises:
            TransientError: the sidecar or broker refused or did not answer.
        """
        try:
            await self.client.publish_event(
                pubsub_name=pubsub_for(topic),
                topic_name=topic,
                data=event.model_dump_json(),
                data_content_type="application/json",
            )
        except DaprGrpcError as exc:
            raise TransientError(
                f"publish to {topic} failed: {exc.code()}: {exc.details()}"
            ) from exc

    async def get_state(self, key: str) -> bytes | None:
        """Read ``key`` from ``inbox-state``; ``None`` when absent.

        Raises:
            TransientError: the sidecar or state store did not answer.
        """
        data, _ = await self.get_state_and_etag(key)
        return data

    async def get_states(self, keys: list[str]) -> dict[str, bytes | None]:
        """Read ``keys`` from ``inbox-state`` in one call (Dapr's bulk get); ``None`` for a key
        that is absent.

        Raises:
            TransientError: the sidecar or state store did not answer, or failed for a key.
        """
        try:
            response = await self.client.get_bulk_state(store_name=STATE_STORE, keys=keys)
        except DaprGrpcError as exc:
            raise TransientError(f"state bulk get failed: {exc.code()}: {exc.details()}") from exc
        failed = [item for item in response.items if item.error]
        if failed:
            raise TransientError(f"state get {failed[0].key} failed: {failed[0].error}")
        found = {item.key: (item.data or None) for item in response.items}
        return {key: found.get(key) for key in keys}

    async def get_state_and_etag(self, key: str) -> tuple[bytes | None, str | None]:
        """Read ``key`` and its ETag from ``inbox-state``; ``(None, None)`` when absent.

        Raises:
            TransientError: the sidecar or state store did not answer.
        """
        try:
            response = await self.client.get_state(store_name=STATE_STORE, key=key)
        except DaprGrpcError as exc:
            raise TransientError(f"state get {key} failed: {exc.code()}: {exc.details()}") from exc
        return (response.data or None), (response.etag or None)

    async def try_save_state(
        self, key: str, value: str, etag: str | None, ttl_s: int | None = None
    ) -> bool:
        """Write ``key`` only if it still has ``etag`` (or, with ``etag`` ``None``, does not
        exist yet): Dapr's optimistic concurrency, first-write-wins
        (https://docs.dapr.io/developing-applications/building-blocks/state-management/state-management-overview/#concurrency).

        Returns:
            ``True`` when written, ``False`` when the store refused the write (another
            writer got there first).

        Raises:
            TransientError: the sidecar or state store did not answer.
        """
        metadata = {"ttlInSeconds": str(ttl_s)} if ttl_s else {}
        try:
            await self.client.save_state(
                store_name=STATE_STORE,
                key=key,
                value=value,
                etag=etag,
                options=StateOptions(concurrency=Concurrency.first_write),
                state_metadata=metadata,
            )
        except DaprGrpcError as exc:
            if exc.code() in (StatusCode.ABORTED, StatusCode.FAILED_PRECONDITION):
                return False
            raise TransientError(f"state save {key} failed: {exc.code()}: {exc.details()}") from exc
        except DaprInternalError as exc:
            # The async client keeps only the message, and stores word a conflict differently
            # (Redis: "possible etag mismatch" or "failed to set key" for a new key; PostgreSQL:
            # "no item was updated"). Report any refusal as a lost race: a real outage shows on
            # the caller's next read.
            log.debug("state save refused", extra={"key": key, "reason": str(exc)[:200]})
            return False
        return True

    async def save_states(self, items: dict[str, BaseModel], ttl_s: int | None = None) -> None:
        """Write several values to ``inbox-state`` in one bulk call (last write wins).

        Args:
            items: key -> model, stored as JSON.
            ttl_s: expire the keys after this many seconds (Dapr ``ttlInSeconds``); ``None``
                keeps them.

        Raises:
            TransientError: the sidecar or state store did not answer.
        """
        metadata = {"ttlInSeconds": str(ttl_s)} if ttl_s else {}
        states = [
            StateItem(key=k, value=v.model_dump_json(), metadata=metadata) for k, v in items.items()
        ]
        try:
            await self.client.save_bulk_state(store_name=STATE_STORE, states=states)
        except DaprGrpcError as exc:
            raise TransientError(f"state save failed: {exc.code()}: {exc.details()}") from exc


class StateContended(TransientError):
    """Other writers on one state key won every compare-and-set round."""


class _CompareAndSet(Protocol):
    async def get_state_and_etag(self, key: str) -> tuple[bytes | None, str | None]: ...

    async def try_save_state(
        self, key: str, value: str, etag: str | None, ttl_s: int | None = None
    ) -> bool: ...


async def compare_and_set(
    sidecar: _CompareAndSet,
    key: str,
    change: Callable[[bytes | None], tuple[str | None, T]],
    attempts: int = 5,
    ttl_s: int | None = None,
) -> T:
    """Read ``key``, compute, and write it under the ETag read (Dapr's optimistic concurrency,
    first-write-wins): the one read-compute-compare-and-set loop on ``inbox-state``, so that
    of two writers neither is lost.

    Args:
        sidecar: a :class:`Sidecar` (or anything with its two state calls).
        change: given the stored value (``None`` when absent), returns the value to write
            (``None``: write nothing) and the result to return. It runs again on what another
            writer stored in between; an exception it raises propagates.
        attempts: rounds before giving up; after a lost round the next waits a random
            0 to 2 ms times the round, so racers spread out and one wins each round.
        ttl_s: the written value's time to live, in seconds (``None``: none).

    Raises:
        StateContended: other writers won every round.
        TransientError: the sidecar or state store did not answer.
    """
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311
        raw, etag = await sidecar.get_state_and_etag(key)
        value, result = change(raw)
        if value is None or await sidecar.try_save_state(key, value, etag, ttl_s=ttl_s):
            return result
    raise StateContended(f"{key} kept changing under {attempts} tries; retry shortly")
