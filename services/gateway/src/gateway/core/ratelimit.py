"""Rate limits shared by every gateway replica, kept in the Dapr state store.

The ``limits`` library provides the limit syntax (``"120/minute"``), the key per limit and a
storage interface; :class:`DaprStateStorage` implements it as a fixed-window counter in
``inbox-state``, updated with Dapr's optimistic concurrency (ETag, first-write-wins), so two
replicas never lose a hit.
"""

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from inbox_common.errors import TransientError
from inbox_common.keys import RATE_LIMIT_PREFIX
from inbox_common.sidecar import Sidecar, StateContended, compare_and_set
from limits import RateLimitItem, parse
from limits.aio.storage import Storage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 25
"""Compare-and-set attempts per hit before giving up (other requests won every race)."""


class DaprStateStorage(Storage):
    """A ``limits`` async storage on ``inbox-state``: one JSON ``{"count", "expires_at"}``
    value per limit key, written with its ETag and a TTL of the window.

    Raises :class:`~inbox_common.errors.TransientError` when the sidecar does not answer.
    """

    STORAGE_SCHEME = ["dapr"]

    def __init__(self, sidecar: Sidecar) -> None:
        super().__init__()
        self._sidecar = sidecar

    @property
    def base_exceptions(self) -> type[Exception]:
        return TransientError

    async def _read(self, key: str) -> tuple[dict | None, str | None]:
        raw, etag = await self._sidecar.get_state_and_etag(RATE_LIMIT_PREFIX + key)
        value = json.loads(raw) if raw else None
        if value is not None and value.get("expires_at", 0) <= time.time():
            value = None  # an expired window the store has not dropped yet
        return value, etag

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to the window of ``key`` (a new one of ``expiry`` s when none is
        open) and return the count.

        Raises:
            StateContended: other requests on the same counter won every round.
        """

        def change(raw: bytes | None) -> tuple[str, int]:
            value = json.loads(raw) if raw else None
            if value is None or value.get("expires_at", 0) <= time.time():
                value = {"count": 0, "expires_at": time.time() + expiry}
            value["count"] += amount
            return json.dumps(value), value["count"]

        # the TTL only cleans up: a window's end is its expires_at
        return await compare_and_set(
            self._sidecar, RATE_LIMIT_PREFIX + key, change, attempts=MAX_ATTEMPTS, ttl_s=expiry + 1
        )

    async def get(self, key: str) -> int:
        value, _ = await self._read(key)
        return value["count"] if value else 0

    async def get_expiry(self, key: str) -> float:
        value, _ = await self._read(key)
        return value["expires_at"] if value else time.time()

    async def check(self) -> bool:
        try:
            await self._sidecar.get_state_and_etag(RATE_LIMIT_PREFIX + "check")
        except TransientError:
            return False
        return True

    async def reset(self) -> int | None:
        return None  # windows expire on their own (TTL)

    async def clear(self, key: str) -> None:
        value, etag = await self._read(key)
        if value is not None:
            await self._sidecar.try_save_state(
                RATE_LIMIT_PREFIX + key, json.dumps({"count": 0, "expires_at": 0}), etag, ttl_s=1
            )


class LimiterUnavailable(TransientError):
    """The state store did not answer, and the scope's limit must hold (fails closed)."""


class RateLimited(Exception):
    """Over the limit: retry after ``retry_after_s`` seconds (for ``Retry-After``)."""

    def __init__(self, scope: str, limit: RateLimitItem, retry_after_s: int) -> None:
        super().__init__(f"rate limit of {limit} per {scope} exceeded; retry in {retry_after_s} s")
        self.scope = scope
        self.retry_after_s = retry_after_s


SYNC_INTERVAL_S = 0.05
"""A replica adds its hits to the shared counter at least this often (s)..."""
BATCH_SHARE = 20
"""...or once it has admitted ``limit // BATCH_SHARE`` hits on its own since the last sync."""
STORE_TIMEOUT_S = 2.0
"""A sync that takes longer counts as the state store not answering (s)."""


@dataclass
class _Window:
    """What this replica knows of one shared counter."""

    shared: int = 0
    pending: int = 0
    synced_at: float = float("-inf")
    resets_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimits:
    """The limits per scope (``operator``, ``channel``, ``login``), enforced across replicas.

    Each replica adds its hits to the shared counter in small batches: between two syncs (at
    most :data:`SYNC_INTERVAL_S` apart) it admits up to ``limit // BATCH_SHARE`` hits on its
    own knowledge. So a busy key costs a compare-and-set per batch, not per request, and the
    most a window can over-admit is that batch per replica (none for limits under
    ``BATCH_SHARE``, which sync on every hit).

    A state store that does not answer (or not within :data:`STORE_TIMEOUT_S`) lets the
    request through (logged), so an outage of the limiter is not an outage of the inbox;
    except for the scopes in ``fail_closed`` (login: an unlimited login is a password-guessing
    and CPU-burning opening), which then raise :class:`LimiterUnavailable`. A counter so busy
    that a hit cannot be counted is refused for a second, like a hit over the limit. Once a
    replica has seen a window full, it refuses until the window resets without asking the
    store again (a fixed-window count only grows), so a flood costs no store round trips.
    """

    def __init__(
        self,
        storage: DaprStateStorage,
        items: dict[str, RateLimitItem],
        fail_closed: frozenset[str] = frozenset(),
    ) -> None:
        self.items = items
        self.fail_closed = fail_closed
        self._storage = storage
        self._windows: dict[str, _Window] = {}

    @classmethod
    def build(
        cls,
        sidecar: Sidecar,
        limits_by_scope: dict[str, str],
        fail_closed: frozenset[str] = frozenset(),
    ) -> "RateLimits":
        """``limits_by_scope``: scope -> a ``limits`` string such as ``"120/minute"``;
        ``fail_closed``: the scopes refused while the state store does not answer."""
        items = {scope: parse(text) for scope, text in limits_by_scope.items()}
        return cls(DaprStateStorage(sidecar), items, fail_closed)

    async def hit(self, scope: str, identity: str) -> None:
        """Count one request of ``identity`` (hashed, so no secret lands in the store).

        Raises:
            RateLimited: over the limit of ``scope``.
            LimiterUnavailable: the state store did not answer and ``scope`` fails closed.
        """
        item = self.items[scope]
        key = item.key_for(scope, hashlib.sha256(identity.encode()).hexdigest()[:32])
        window = self._windows.get(key) or self._new_window(key)
        async with window.lock:
            now = time.time()
            if now < window.resets_at and window.shared >= item.amount:
                raise RateLimited(scope, item, _seconds_until(window.resets_at))
            if (
                now < window.resets_at
                and now - window.synced_at < SYNC_INTERVAL_S
                and window.pending < item.amount // BATCH_SHARE
            ):
                if window.shared + window.pending >= item.amount:
                    raise RateLimited(scope, item, _seconds_until(window.resets_at))
                window.pending += 1
                return
            amount, window.pending = window.pending + 1, 0
            try:
                async with asyncio.timeout(STORE_TIMEOUT_S):
                    window.shared = await self._storage.incr(key, item.get_expiry(), amount)
                    window.synced_at = time.time()
                    if window.resets_at <= now:
                        window.resets_at = await self._storage.get_expiry(key)
            except StateContended:
                raise RateLimited(scope, item, 1) from None
            except (TransientError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {STORE_TIMEOUT_S:g} s"
                if scope in self.fail_closed:
                    log.warning("rate limit unavailable", extra={"scope": scope, "reason": reason})
                    raise LimiterUnavailable(
                        f"the {scope} rate limit cannot be checked, so the request is refused "
                        "rather than let through unlimited"
                    ) from None
                log.warning("rate limit not checked", extra={"scope": scope, "reason": reason})
                return
            if window.shared > item.amount:
                raise RateLimited(scope, item, _seconds_until(window.resets_at))

    def _new_window(self, key: str) -> _Window:
        if len(self._windows) > 10_000:  # forget the windows that are over
            now = time.time()
            self._windows = {k: w for k, w in self._windows.items() if w.resets_at > now}
        return self._windows.setdefault(key, _Window())


def _seconds_until(moment: float) -> int:
    return max(1, int(moment - time.time() + 0.999))
