"""Operator login."""

from fastapi import APIRouter, HTTPException, status
from inbox_common.events import PlainLine
from pydantic import BaseModel, Field

from gateway.api.deps import ClientAddress, PasswordsDep, RateLimitsDep, SettingsDep
from gateway.core.security import LoginBusy, create_access_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: PlainLine = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class OperatorOut(BaseModel):
    username: str
    display_name: str
    role: str = Field(description="`admin` or `agent`")


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - RFC 6750 token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires")
    operator: OperatorOut


@router.post(
    "/login",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many attempts (per address, per username or in all)"},
        503: {"description": "The limits cannot be checked, or too many logins wait"},
    },
)
async def login(
    body: LoginRequest,
    settings: SettingsDep,
    rate_limits: RateLimitsDep,
    passwords: PasswordsDep,
    address: ClientAddress,
) -> Token:
    """Exchange operator credentials for a bearer token (JWT, HS256).

    Attempts are limited per client address (``LOGIN_ADDRESS_RATE_LIMIT``), per username
    (``LOGIN_RATE_LIMIT``) and for everyone together (``LOGIN_GLOBAL_RATE_LIMIT``), in that
    order, so that a flood from one address spends only that address's allowance: 429 with
    ``Retry-After`` beyond one. The limits fail closed: 503 with ``Retry-After`` while the
    state store does not answer. The password check (argon2) runs on a bounded thread pool
    (``LOGIN_HASH_WORKERS``); 503 when ``LOGIN_HASH_QUEUE`` logins already wait for it.
    """
    await rate_limits.hit("login_address", address)
    await rate_limits.hit("login", body.username.lower())
    await rate_limits.hit("login_global", "all")
    try:
        operator = await passwords.authenticate(body.username, body.password)
    except LoginBusy as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    if operator is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    return Token(
        access_token=create_access_token(settings, operator),
        expires_in=settings.jwt_ttl_s,
        operator=OperatorOut(
            username=operator.username, display_name=operator.display_name, role=operator.role
        ),
    )
