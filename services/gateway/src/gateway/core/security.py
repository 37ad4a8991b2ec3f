"""Operator passwords (argon2id) and access tokens (JWT, HS256, python-jose).

Tokens carry ``sub`` (username), ``name``, ``aud``, ``iss``, ``iat`` and ``exp``; all are
required on decode, and the algorithm is pinned so a token cannot choose its own (``alg: none``
or an RS/HS confusion; RFC 8725 section 3.1).
"""

import getpass
import sys
import time
from dataclasses import dataclass

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


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or for another audience."""


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
    return Operator(username=username, display_name=account.display_name)


def create_access_token(settings: Settings, operator: Operator, now: float | None = None) -> str:
    """A signed JWT for ``operator`` valid for ``jwt_ttl_s`` seconds."""
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": operator.username,
        "name": operator.display_name,
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
    return Operator(username, account.display_name), int(claims["exp"])


def hash_password_cli() -> int:
    """``gateway-hash-password``: read a password (prompt or stdin), print its argon2 hash."""
    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
