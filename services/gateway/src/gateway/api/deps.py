"""Dependencies declared once as ``Annotated`` aliases."""

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from inbox_common.sidecar import Sidecar

from gateway.core.config import Settings
from gateway.core.ratelimit import RateLimits
from gateway.core.security import InvalidToken, Operator, PasswordChecker, decode_access_token
from gateway.core.seen import SeenStore
from gateway.live import Hub

_bearer = HTTPBearer(auto_error=False, description="Token from POST /api/v1/auth/login")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_sidecar(request: Request) -> Sidecar:
    return request.app.state.sidecar


def get_hub(request: Request) -> Hub:
    return request.app.state.hub


def get_rate_limits(request: Request) -> RateLimits:
    return request.app.state.rate_limits


def get_seen(request: Request) -> SeenStore:
    return request.app.state.seen


def get_passwords(request: Request) -> PasswordChecker:
    return request.app.state.passwords


def client_address(request: Request) -> str:
    """The client's address as the login limits count it: the connection's peer (uvicorn puts
    the ``X-Forwarded-For`` client there only for proxies in ``FORWARDED_ALLOW_IPS``). An IPv6
    address counts as its /64, which one subscriber usually holds whole; ``"unknown"`` when
    the server names no peer."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SidecarDep = Annotated[Sidecar, Depends(get_sidecar)]
HubDep = Annotated[Hub, Depends(get_hub)]
RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]
SeenDep = Annotated[SeenStore, Depends(get_seen)]
PasswordsDep = Annotated[PasswordChecker, Depends(get_passwords)]
ClientAddress = Annotated[str, Depends(client_address)]


def current_operator(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Operator:
    """The operator of a valid bearer token; 401 with the reason otherwise."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        operator, _ = decode_access_token(settings, credentials.credentials)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid token: {exc}",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    return operator


async def limited_operator(
    operator: Annotated[Operator, Depends(current_operator)], rate_limits: RateLimitsDep
) -> Operator:
    """:func:`current_operator`, counted against ``OPERATOR_RATE_LIMIT``; 429 beyond it."""
    await rate_limits.hit("operator", operator.username)
    return operator


CurrentOperator = Annotated[Operator, Depends(limited_operator)]


def admin_operator(operator: CurrentOperator) -> Operator:
    """:data:`CurrentOperator` with the ``admin`` role; 403 naming the role otherwise."""
    if operator.role != "admin":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the admin role is required; {operator.username} is an agent",
        )
    return operator


AdminOperator = Annotated[Operator, Depends(admin_operator)]


async def channel_key(
    settings: SettingsDep,
    rate_limits: RateLimitsDep,
    x_api_key: Annotated[str | None, Header(description="A key from CHANNEL_API_KEYS")] = None,
) -> None:
    """Require a valid customer-channel API key in ``X-API-Key`` (401 otherwise), counted
    against ``CHANNEL_RATE_LIMIT`` (429 beyond it)."""
    if not x_api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    sent = x_api_key.encode()
    if not any(
        hmac.compare_digest(sent, k.get_secret_value().encode()) for k in settings.channel_api_keys
    ):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key")
    await rate_limits.hit("channel", x_api_key)


ChannelKey = Depends(channel_key)
