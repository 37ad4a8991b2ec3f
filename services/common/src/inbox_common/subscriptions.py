"""The adapter between Dapr's HTTP subscription protocol and typed, testable handlers.

Dapr reads the app's reply to a delivery as follows (https://docs.dapr.io/reference/api/pubsub_api/):
2xx with ``{"status": "SUCCESS"}`` acknowledges, ``"RETRY"`` redelivers under the resiliency
policy, ``"DROP"`` sends the event to the dead-letter topic; a 404 silently drops and any other
status retries. So the endpoint here always answers 200 with one of the three words, and never
lets FastAPI answer 422 for a body it does not like (that would be retried forever). Each
answer is counted in ``inbox_subscription_deliveries_total{topic, result}``
(:data:`inbox_common.metrics.DELIVERIES`).

A bulk subscription (:func:`subscribe_bulk`) gets many events in one request and answers a
status per entry (https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-bulk/).
"""

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from inbox_common import metrics
from inbox_common.errors import PoisonError, TransientError
from inbox_common.events import DEAD_LETTER_SUFFIX, dead_letter_topic, pubsub_for

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

E = TypeVar("E", bound=BaseModel)

SUCCESS = {"status": "SUCCESS"}
RETRY = {"status": "RETRY"}
DROP = {"status": "DROP"}

DAPR_ROUTE_PREFIXES = ("/dapr/", "/events/")
"""Paths only the sidecar calls; they require the app API token and are left out of the
OpenAPI document (:func:`sidecar_app`)."""


def sidecar_app(app: FastAPI) -> DaprApp:
    """The :class:`DaprApp` of ``app``, whose sidecar-only routes stay out of the public OpenAPI
    document (``/openapi.json``, ``/docs``).

    Every route under :data:`DAPR_ROUTE_PREFIXES` is hidden, whoever registered it: DaprApp's
    own ``/dapr/subscribe``, the ``/events/<topic>`` routes of :func:`subscribe`, and any added
    later. The routes still serve the sidecar; only the document leaves them out.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # Decided when the document is first built (FastAPI caches it), so routes registered
        # after this call are covered too; DaprApp's add_api_route takes no include_in_schema.
        if app.openapi_schema is None:
            for route in app.routes:
                if isinstance(route, APIRoute) and route.path.startswith(DAPR_ROUTE_PREFIXES):
                    route.include_in_schema = False
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]
    return DaprApp(app)


class DeadLetter(BaseModel):
    """An event that ended in ``<topic>.dead-letter``: CloudEvent id, original topic, data."""

    event_id: str
    topic: str
    data: Any


def subscribe(
    dapr_app: DaprApp,
    topic: str,
    model: type[E],
    handler: Callable[[E], Awaitable[None]],
    *,
    metadata: dict[str, str] | None = None,
) -> None:
    """Register ``handler`` for ``topic`` on the component that carries it
    (:func:`~inbox_common.events.pubsub_for`).

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
        envelope = _envelope(await request.body())
        if isinstance(envelope, str):
            return _drop(topic, None, envelope)
        event_id = envelope.get("id")
        data = _data(envelope)
        if isinstance(data, _Unparsable):
            return _drop(topic, event_id, f"data is not JSON: {data.reason}")
        try:
            event = model.model_validate(data)
        except ValidationError as exc:
            return _drop(topic, event_id, f"data does not match {model.__name__}: {exc}")
        return await _run(topic, event_id, handler(event))

    _register(dapr_app, topic, endpoint, dead_letter_topic(topic), metadata)


@dataclass(frozen=True)
class Entry(Generic[E]):
    """One event of a bulk delivery: its CloudEvent ``id``, and the trace context its
    publisher left in the CloudEvent (``traceparent``, ``tracestate``)."""

    event: E
    parent: otel_context.Context
    event_id: str = ""

    @contextmanager
    def span(self, topic: str) -> Iterator[trace.Span]:
        """The current span while this entry is handled: ``process <topic>``, a consumer span
        in the publisher's trace (OpenTelemetry messaging conventions), so each event's trace
        goes on through a batch as it does through a delivery of its own."""
        with _tracer.start_as_current_span(
            f"process {topic}", context=self.parent, kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.destination.name", topic)
            span.set_attribute("messaging.operation.type", "process")
            yield span


Outcome = BaseException | None
"""What a bulk handler says of one entry: ``None`` handled (SUCCESS), a
:class:`~inbox_common.errors.PoisonError` (DROP), any other exception (RETRY)."""


def subscribe_bulk(
    dapr_app: DaprApp,
    topic: str,
    model: type[E],
    handler: Callable[[Sequence[Entry[E]]], Awaitable[Sequence[Outcome]]],
    *,
    max_messages: int,
    max_await_ms: int,
) -> None:
    """Register ``handler`` for ``topic`` as a Dapr bulk subscription: the sidecar gathers up
    to ``max_messages`` events, waiting at most ``max_await_ms`` ms after the first, and posts
    them in one request (``bulkSubscribe`` in the programmatic subscription; the SDK's
    ``DaprApp.subscribe`` has no option for it, so it is added to the entry it made).

    The route is ``/events/<topic>`` and the dead-letter topic ``<topic>.dead-letter``, as
    for :func:`subscribe`. The answer is ``{"statuses": [{"entryId", "status"}]}``, one per
    entry: an entry that is not a valid event is DROPped without reaching ``handler``; the
    others get what ``handler`` returns for them, in order (see :data:`Outcome`). If
    ``handler`` raises, every entry gets what that exception means. Dapr retries the RETRY
    entries alone under the resiliency policy, then sends them to the dead-letter topic.

    Args:
        handler: async function taking the valid entries and returning one outcome each.
        max_messages: events per request at most (Dapr's ``maxMessagesCount``).
        max_await_ms: ms the sidecar waits for more events (``maxAwaitDurationMs``).
    """

    async def endpoint(request: Request) -> dict[str, Any]:
        body = _envelope(await request.body())
        entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            log.error("bulk delivery without entries", extra={"topic": topic})
            return {"statuses": []}  # Dapr retries every entry it gets no status for
        statuses: dict[str, str] = {}
        valid: list[tuple[str, Entry[E]]] = []
        for item in entries:
            entry_id, event_id, entry = _bulk_entry(model, item)
            if isinstance(entry, Entry):
                valid.append((entry_id, entry))
            else:
                statuses[entry_id] = _drop(topic, event_id, entry)["status"]
        if valid:
            try:
                outcomes: Sequence[Outcome] = await handler([entry for _, entry in valid])
            except Exception as exc:  # noqa: BLE001 - every entry gets what it means
                outcomes = [exc] * len(valid)
            for (entry_id, entry), outcome in zip(valid, outcomes, strict=True):
                statuses[entry_id] = _status(topic, entry.event_id, outcome)["status"]
        return {"statuses": [{"entryId": k, "status": v} for k, v in statuses.items()]}

    _register(dapr_app, topic, endpoint, dead_letter_topic(topic), None)
    dapr_app._subscriptions[-1]["bulkSubscribe"] = {  # noqa: SLF001 - see the docstring
        "enabled": True,
        "maxMessagesCount": max_messages,
        "maxAwaitDurationMs": max_await_ms,
    }


def subscribe_dead_letters(
    dapr_app: DaprApp,
    topic: str,
    handler: Callable[[DeadLetter], Awaitable[None]],
) -> None:
    """Register ``handler`` for ``<topic>.dead-letter`` on ``topic``'s component.

    Dead letters arrive in whatever shape made them poison, so the handler gets the CloudEvent
    id and its ``data`` as received (parsed JSON when possible, else the raw text) rather than
    a validated model. The subscription has no dead-letter topic of its own: a failing handler
    is retried under the resiliency policy, and an envelope that is not JSON at all is logged
    and dropped.

    Args:
        dapr_app: the service's :class:`DaprApp`.
        topic: the *original* topic, e.g. ``messages.submitted``.
        handler: async function; raises :class:`~inbox_common.errors.TransientError` to retry.
    """
    dead_topic = dead_letter_topic(topic)

    async def endpoint(request: Request) -> dict[str, str]:
        raw = await request.body()
        envelope = _envelope(raw)
        if isinstance(envelope, str):
            return _drop(dead_topic, None, envelope)
        data = _data(envelope)
        letter = DeadLetter(
            event_id=str(envelope.get("id") or ""),
            topic=topic,
            data=data.text if isinstance(data, _Unparsable) else data,
        )
        log.error(
            "dead letter received",
            extra={"topic": topic, "event_id": letter.event_id},
        )
        return await _run(dead_topic, letter.event_id, handler(letter))

    _register(dapr_app, dead_topic, endpoint, None, None)


class _Unparsable:
    def __init__(self, text: str, reason: str) -> None:
        self.text, self.reason = text, reason


def _envelope(raw: bytes) -> dict[str, Any] | str:
    """The CloudEvent as a dict, or the reason it is not one."""
    try:
        envelope: Any = json.loads(raw)
    except ValueError as exc:
        return f"body is not JSON: {exc}"
    if not isinstance(envelope, dict):
        return "CloudEvent envelope is not a JSON object"
    return envelope


def _bulk_entry(model: type[E], item: Any) -> tuple[str, str | None, "Entry[E] | str"]:
    """A bulk delivery's entry: its ``entryId``, its CloudEvent ``id``, and the valid event
    with its trace context or the reason it is poison."""
    if not isinstance(item, dict):
        return "", None, "entry is not a JSON object"
    entry_id = str(item.get("entryId") or item.get("entryID") or "")
    cloud_event = item.get("event")
    if isinstance(cloud_event, str):
        cloud_event = _envelope(cloud_event.encode())
    if not isinstance(cloud_event, dict):
        return entry_id, None, "entry event is not a CloudEvent"
    event_id = str(cloud_event.get("id") or "")
    data = _data(cloud_event)
    if isinstance(data, _Unparsable):
        return entry_id, event_id, f"data is not JSON: {data.reason}"
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        return entry_id, event_id, f"data does not match {model.__name__}: {exc}"
    carrier = {
        k: v for k in ("traceparent", "tracestate") if isinstance(v := cloud_event.get(k), str)
    }
    return entry_id, event_id, Entry(event, propagate.extract(carrier), event_id)


def _data(envelope: dict[str, Any]) -> Any:
    """CloudEvent ``data``; Dapr passes JSON data through as a string on some brokers."""
    data = envelope.get("data")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError as exc:
            return _Unparsable(data, str(exc))
    return data


async def _run(topic: str, event_id: Any, work: Awaitable[None]) -> dict[str, str]:
    try:
        await work
    except Exception as exc:  # noqa: BLE001 - mapped to a status by _status
        return _status(topic, event_id, exc)
    return SUCCESS


def _status(topic: str, event_id: Any, outcome: Outcome) -> dict[str, str]:
    """Dapr's answer for a handler's ``outcome``, logged when it is not SUCCESS."""
    if outcome is None:
        return SUCCESS
    if isinstance(outcome, PoisonError):
        return _drop(topic, event_id, str(outcome))
    if isinstance(outcome, TransientError):
        log.warning(
            "retrying event", extra={"topic": topic, "event_id": event_id, "reason": str(outcome)}
        )
    else:
        log.error(
            "handler failed; retrying",
            extra={"topic": topic, "event_id": event_id},
            exc_info=outcome,
        )
    return RETRY


def _register(
    dapr_app: DaprApp,
    topic: str,
    endpoint: Callable[[Request], Awaitable[dict[str, Any]]],
    dead_letter: str | None,
    metadata: dict[str, str] | None,
) -> None:
    """Route ``endpoint`` as ``topic``'s subscription, counting each status it answers: the
    one of a delivery, or each entry's of a bulk delivery."""
    metrics.watch_topic(topic)

    async def counted(request: Request) -> dict[str, Any]:
        answer = await endpoint(request)
        entries = answer.get("statuses", [answer])
        for status in (entry["status"] for entry in entries):
            metrics.DELIVERIES.labels(topic, status).inc()
        return answer

    counted.__name__ = f"on_{topic.replace('.', '_').replace('-', '_')}"
    dapr_app.subscribe(
        pubsub=pubsub_for(topic.removesuffix(DEAD_LETTER_SUFFIX)),
        topic=topic,
        route=f"/events/{topic}",
        dead_letter_topic=dead_letter,
        metadata=metadata or {},
    )(counted)


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
