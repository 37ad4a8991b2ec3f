"""The adapter between Dapr's HTTP subscription protocol and typed, testable handlers.

Dapr reads the app's reply to a delivery as follows (https://docs.dapr.io/reference/api/pubsub_api/):
2xx with ``{"status": "SUCCESS"}`` acknowledges, ``"RETRY"`` redelivers under the resiliency
policy, ``"DROP"`` sends the event to the dead-letter topic; a 404 silently drops and any other
status retries. So the endpoint here always answers 200 with one of the three words, and never
lets FastAPI answer 422 for a body it does not like (that would be retried forever).
"""

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dapr.ext.fastapi import DaprApp
from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from inbox_common.errors import PoisonError, TransientError
from inbox_common.events import PUBSUB, dead_letter_topic

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BaseModel)

SUCCESS = {"status": "SUCCESS"}
RETRY = {"status": "RETRY"}
DROP = {"status": "DROP"}

DAPR_ROUTE_PREFIXES = ("/dapr/", "/events/")
"""Paths only the sidecar calls; they require the app API token."""


def subscribe(
    dapr_app: DaprApp,
    topic: str,
    model: type[E],
    handler: Callable[[E], Awaitable[None]],
    *,
    metadata: dict[str, str] | None = None,
) -> None:
    """Register ``handler`` for ``topic`` on :data:`~inbox_common.events.PUBSUB`.

    The route is ``/events/<topic>`` and the dead-letter topic ``<topic>.dead-letter``.

    Args:
        dapr_app: the service's :class:`DaprApp`.
        topic: topic name from :mod:`inbox_common.events`.
        model: the event model that ``data`` must validate against.
        handler: async function taking the validated event. It raises
            :class:`~inbox_common.errors.TransientError` for RETRY and
            :class:`~inbox_common.errors.PoisonError` for DROP; any other exception is
            logged and answered RETRY, so a bug never silently loses a message.
        metadata: subscription metadata passed to Dapr (for example ``rawPayload``).
    """

    async def endpoint(request: Request) -> dict[str, str]:
        raw = await request.body()
        try:
            envelope: Any = json.loads(raw)
        except ValueError as exc:
            return _drop(topic, None, f"body is not JSON: {exc}")
        if not isinstance(envelope, dict):
            return _drop(topic, None, "CloudEvent envelope is not a JSON object")
        event_id = envelope.get("id")
        data = envelope.get("data")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                return _drop(topic, event_id, f"data is not JSON: {exc}")
        try:
            event = model.model_validate(data)
        except ValidationError as exc:
            return _drop(topic, event_id, f"data does not match {model.__name__}: {exc}")
        try:
            await handler(event)
        except PoisonError as exc:
            return _drop(topic, event_id, str(exc))
        except TransientError as exc:
            log.warning(
                "retrying event", extra={"topic": topic, "event_id": event_id, "reason": str(exc)}
            )
            return RETRY
        except Exception:
            log.exception("handler failed; retrying", extra={"topic": topic, "event_id": event_id})
            return RETRY
        return SUCCESS

    endpoint.__name__ = f"on_{topic.replace('.', '_')}"
    dapr_app.subscribe(
        pubsub=PUBSUB,
        topic=topic,
        route=f"/events/{topic}",
        dead_letter_topic=dead_letter_topic(topic),
        metadata=metadata or {},
    )(endpoint)


def _drop(topic: str, event_id: Any, reason: str) -> dict[str, str]:
    log.error(
        "dropping poison event to dead-letter topic",
        extra={"topic": topic, "event_id": event_id, "reason": reason[:1000]},
    )
    return DROP


class AppTokenMiddleware:
    """Reject sidecar-only routes unless they carry the app API token.

    Daprd sends ``APP_API_TOKEN`` as the ``dapr-api-token`` header on every call into the app
    (https://docs.dapr.io/operations/security/app-api-token/); the Python SDK does not check it.
    Paths under :data:`DAPR_ROUTE_PREFIXES` answer 401 without it. With no token configured
    (development only, enforced by settings) every request passes.
    """

    def __init__(self, app: ASGIApp, token: SecretStr | None) -> None:
        self.app = app
        self.token = token.get_secret_value().encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token is not None
            and scope["type"] == "http"
            and scope["path"].startswith(DAPR_ROUTE_PREFIXES)
        ):
            sent = dict(scope["headers"]).get(b"dapr-api-token", b"")
            if not hmac.compare_digest(sent, self.token):
                response = JSONResponse(
                    {"detail": "missing or wrong dapr-api-token header"}, status_code=401
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
