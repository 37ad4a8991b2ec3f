"""Operator login."""

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from gateway.api.deps import RateLimitsDep, SettingsDep
from gateway.core.security import authenticate, create_access_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class OperatorOut(BaseModel):
    username: str
    display_name: str


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - RFC 6750 token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires")
    operator: OperatorOut


@router.post(
    "/login",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many attempts"},
    },
)
async def login(body: LoginRequest, settings: SettingsDep, rate_limits: RateLimitsDep) -> Token:
    """Exchange operator credentials for a bearer token (JWT, HS256). Attempts per username
    are limited (``LOGIN_RATE_LIMIT``; 429 with ``Retry-After`` beyond it)."""
    await rate_limits.hit("login", body.username.lower())
    operator = authenticate(settings, body.username, body.password)
    if operator is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    return Token(
        access_token=create_access_token(settings, operator),
        expires_in=settings.jwt_ttl_s,
        operator=OperatorOut(username=operator.username, display_name=operator.display_name),
    )
