"""Operator passwords (argon2id) and access tokens (JWT, HS256, python-jose).

Tokens carry ``sub`` (username), ``name``, ``aud``, ``iss``, ``iat`` and ``exp``; all are
required on decode, and the algorithm is pinned so a token cannot choose its own (``alg: none``
or an RS/HS confusion; RFC 8725 section 3.1). A token never travels in a URL (URLs land in
access logs, traces and browser history): HTTP sends it as ``Authorization: Bearer`` (RFC 6750
section 2.1), a WebSocket in ``Sec-WebSocket-Protocol`` (:func:`token_from_subprotocols`).
"""

import asyncio
import contextlib
import getpass
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

from gateway.core.config import Settings

ALGORITHM = "HS256"
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equaliser")


@dataclass(frozen=True)
class Operator:
    username: str
    display_name: str
    role: str = "agent"
    """``admin`` or ``agent`` (:class:`gateway.core.config.OperatorAccount`)."""


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or for another audience."""


class LoginBusy(Exception):
    """Every password-checking thread is busy and enough logins already wait: retry after
    ``retry_after_s`` seconds."""

    retry_after_s = 1


def hash_password(password: str) -> str:
    """argon2id hash with a random salt, in PHC string format."""
    return _hasher.hash(password)


def authenticate(settings: Settings, username: str, password: str) -> Operator | None:
    """The operator for these credentials, or ``None``. Takes the same time for unknown users."""
    account = settings.accounts.get(username)
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None:
        return None
    return Operator(username=username, display_name=account.display_name, role=account.role)


HASH_THREAD_NICE = 10
"""Niceness of the password-checking threads: the event loop's thread wins the CPU from them."""


def _lower_priority() -> None:
    # Linux keeps a nice value per thread, and the threads argon2 starts for its lanes inherit
    # it; elsewhere PRIO_PROCESS with a thread id fails, and the checks run at normal priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICE)


class PasswordChecker:
    """:func:`authenticate` on a pool of ``workers`` threads, off the event loop.

    An argon2 check costs tens to hundreds of milliseconds of CPU on purpose (and runs its
    lanes on threads of its own); on the event loop each one would stall every request and
    socket of the replica. argon2-cffi releases the GIL while it hashes, so the pool's threads
    run beside the loop, at a lower priority (:data:`HASH_THREAD_NICE`) so that the loop still
    gets the CPU at once. An anyio ``CapacityLimiter`` admits ``workers`` checks at a time and
    counts those waiting; a login finding ``max_waiting`` already waiting raises
    :class:`LoginBusy` at once instead of queueing.
    """

    def __init__(self, settings: Settings, workers: int, max_waiting: int) -> None:
        self._settings = settings
        self._limiter = anyio.CapacityLimiter(workers)
        self._max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="password-check", initializer=_lower_priority
        )

    async def authenticate(self, username: str, password: str) -> Operator | None:
        """The operator for these credentials, or ``None``.

        Raises:
            LoginBusy: every thread is busy and ``max_waiting`` logins already wait.
        """
        load = self._limiter.statistics()
        if load.borrowed_tokens >= load.total_tokens and load.tasks_waiting >= self._max_waiting:
            raise LoginBusy(f"{load.tasks_waiting} sign-ins are already waiting; retry shortly")
        async with self._limiter:
            check = partial(authenticate, self._settings, username, password)
            return await asyncio.get_running_loop().run_in_executor(self._pool, check)

    def close(self) -> None:
        """Let running checks finish, drop none, start no more threads."""
        self._pool.shutdown(wait=False)


WS_PROTOCOL = "inbox.v1"
"""The WebSocket subprotocol of ``/ws``, which the server selects in its handshake answer:
each frame is one event (a JSON object)."""
WS_PROTOCOL_BATCHED = "inbox.v2"
"""The same events, each frame a JSON array of one or more of them in order: the server sends
what queued for the socket in one frame, at most one frame every
:data:`gateway.live.BATCH_INTERVAL_S`. Selected when the client offers it."""
WS_BEARER_PREFIX = "inbox.bearer."
"""A ``Sec-WebSocket-Protocol`` value ``inbox.bearer.<JWT>`` carries the access token."""


def token_from_subprotocols(offered: Sequence[str]) -> str:
    """The access token a WebSocket client offers in ``Sec-WebSocket-Protocol``.

    Browsers cannot set ``Authorization`` on a WebSocket, and a URL is logged and traced, so
    the client offers two values, ``inbox.v1`` and ``inbox.bearer.<JWT>`` (the way Kubernetes'
    API server takes bearer tokens from browsers). A JWT is base64url and dots, all valid in a
    subprotocol token (RFC 6455 section 4.1, RFC 7230 section 3.2.6). The server answers with
    ``inbox.v1`` only (RFC 6455 section 4.2.2: one of the offered values), so the token is
    never echoed.

    Args:
        offered: the values of ``Sec-WebSocket-Protocol``, in the client's order.

    Raises:
        InvalidToken: ``inbox.v1`` (or ``inbox.v2``) or the token is missing, or more than one
            token is offered.
    """
    tokens = [p.removeprefix(WS_BEARER_PREFIX) for p in offered if p.startswith(WS_BEARER_PREFIX)]
    if not {WS_PROTOCOL, WS_PROTOCOL_BATCHED} & set(offered) or len(tokens) != 1 or not tokens[0]:
        raise InvalidToken(
            f"offer Sec-WebSocket-Protocol {WS_PROTOCOL!r} and one {WS_BEARER_PREFIX + '<token>'!r}"
        )
    return tokens[0]


def chosen_protocol(offered: Sequence[str]) -> str:
    """The subprotocol the server selects: ``inbox.v2`` (batched frames) when the client
    offers it, else ``inbox.v1``."""
    return WS_PROTOCOL_BATCHED if WS_PROTOCOL_BATCHED in offered else WS_PROTOCOL


def create_access_token(settings: Settings, operator: Operator, now: float | None = None) -> str:
    """A signed JWT for ``operator`` valid for ``jwt_ttl_s`` seconds."""
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": operator.username,
        "name": operator.display_name,
        "role": operator.role,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": issued,
        "exp": issued + settings.jwt_ttl_s,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> tuple[Operator, int]:
    """Verify ``token`` and return its operator and expiry (Unix seconds).

    Raises:
        InvalidToken: with a short reason; the operator must also still exist in settings.
    """
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
            },
        )
    except JWTError as exc:
        raise InvalidToken(str(exc) or "invalid token") from None
    username = claims["sub"]
    account = settings.accounts.get(username)
    if account is None:
        raise InvalidToken("operator no longer exists")
    # the role is the account's now, not the token's: a demoted admin loses it at once
    return Operator(username, account.display_name, account.role), int(claims["exp"])


def hash_password_cli() -> int:
    """``gateway-hash-password``: read a password (prompt or stdin), print its argon2 hash."""
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
