"""Renew-token rotation with reuse detection, shared by every gateway replica.

Each renewal of a widget session answers with a new renew token and retires the one used, as
the OAuth 2.0 Security Best Current Practice asks of refresh tokens (RFC 9700 section 4.14.2):
a retired token used again means that two parties hold the chain (a stolen copy, or the
customer after the thief), so the whole session is revoked and both must start anew.

One state-store key per session that has been renewed, ``gateway:renew:{family}``, holding
``{"current": jti, "previous": jti, "rotated_at": unix s}`` or ``{"revoked": true}``, with a
TTL that ends with the session's renew tokens. A session never renewed has no key: its first
token's ``jti`` equals its ``fam``, so no unauthenticated request writes anything that
outlives it. The previous token still renews for ``CUSTOMER_RENEW_GRACE_S`` after a rotation
and gets the same successor, so two tabs renewing at once do not revoke their own session.
"""

import json
import secrets
import time

from inbox_common.keys import renew_key
from inbox_common.sidecar import Sidecar, compare_and_set

from gateway.core.customers import RenewGrant


class RenewRefused(Exception):
    """The renew token is retired or its session revoked: start a new session."""


async def rotate(
    sidecar: Sidecar, grant: RenewGrant, grace_s: float, now: float | None = None
) -> RenewGrant:
    """Retire the renew token ``grant`` names and return its successor's grant.

    Args:
        grant: the presented token's family, id and expiry (already verified as signed).
        grace_s: seconds after a rotation during which the previous token still renews.
        now: Unix seconds (default: the clock).

    Raises:
        RenewRefused: the token was already rotated (outside the grace) or its session was
            revoked; a reuse revokes the session now.
        TransientError: the state store did not answer.
    """
    now = time.time() if now is None else now
    ttl_s = max(1, int(grant.expires_at - now))

    def change(raw: bytes | None) -> tuple[str | None, str | RenewRefused]:
        record = json.loads(raw) if raw else {"current": grant.family}
        if record.get("revoked"):
            return None, RenewRefused("this session was revoked: start a new one")
        if grant.token_id == record["current"]:
            successor = secrets.token_urlsafe(16)
            value = {"current": successor, "previous": grant.token_id, "rotated_at": now}
            return json.dumps(value), successor
        if grant.token_id == record.get("previous") and now - record["rotated_at"] <= grace_s:
            return None, record["current"]
        return json.dumps({"revoked": True}), RenewRefused(
            "renew token already used: the session is revoked, start a new one"
        )

    result = await compare_and_set(sidecar, renew_key(grant.family), change, ttl_s=ttl_s)
    if isinstance(result, RenewRefused):
        raise result
    return RenewGrant(grant.family, result, grant.expires_at)
