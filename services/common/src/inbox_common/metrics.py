"""Every Prometheus metric of Support Inbox, and the server that exposes them.

Each service serves the metrics of its own process in the Prometheus text format on a port of
its own, ``METRICS_PORT`` (default 9464, 0 turns it off), at ``/metrics``: never on the
gateway's public port, so every route there keeps its authentication. A metric a service
does not record is still listed, at 0, so every service exposes the same names.

Names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/):
``inbox_`` prefix, base units in the name (``_seconds``), ``_total`` on counters. Labels have a
small, fixed set of values: route templates, never paths; topics, statuses, roles; never a
message, conversation or operator id. The process and Python collectors of
``prometheus_client`` (``process_*``, ``python_*``) come along.

The Dapr sidecars publish their own metrics (``dapr_*``) on their metrics port (9090 in a
cluster); they are not defined here.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info
from starlette.types import ASGIApp

from inbox_common.events import AuthorRole, InsightStatus

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9464
"""The port Prometheus client libraries conventionally use for an app's own metrics."""
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AI_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods kept as they are in the ``method`` label; any other is counted as ``other``."""
AUTHOR_ROLES = tuple(role.value for role in AuthorRole)
INSIGHT_STATUSES = tuple(s.value for s in InsightStatus if s is not InsightStatus.PROCESSING)
"""An analysis ends ``available`` or ``unavailable``; ``processing`` is no outcome."""
DELIVERY_RESULTS = ("SUCCESS", "RETRY", "DROP")
REDELIVERY_KINDS = ("message", "insight", "cached_insight", "summary", "cached_summary")
INSIGHT_REDELIVERY_OUTCOMES = ("requested", "abandoned")
RATE_LIMIT_SCOPES = (
    "operator",
    "channel",
    "login",
    "login_address",
    "login_global",
    "customer",
    "customer_read",
    "widget_channel",
    "widget_session",
    "widget_channel_session",
    "websocket",
)
LLM_TOKEN_TYPES = ("input", "output")
LLM_OPERATIONS = ("chat",)

# ------------------------------------------------------------------ HTTP (every service)

HTTP_REQUESTS = Counter(
    "inbox_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
"""Counter ``inbox_http_requests_total{method, route, status}``: HTTP requests answered.

``route`` is the route template (``/api/v1/conversations/{conversation_id}``), ``/`` for the
gateway's static files, ``none`` for a path no route matches. ``status`` is the code sent
(``202``, ``401``...). Health checks (``/healthz``) are not counted; WebSockets are counted
by the ``inbox_websocket_*`` metrics. Every service, including the sidecar's calls into it
(``/events/<topic>``, ``/dapr/subscribe``)."""

HTTP_REQUEST_DURATION = Histogram(
    "inbox_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its response, in seconds.",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS_S,
)
"""Histogram ``inbox_http_request_duration_seconds{method, route, status}``: seconds from the
request's arrival to its last response byte; labels as :data:`HTTP_REQUESTS`."""

# ------------------------------------------------------------------ WebSocket (gateway)

WEBSOCKET_CONNECTIONS_OPENED = Counter(
    "inbox_websocket_connections_opened",
    "Operator WebSockets accepted (signed in) by this gateway replica.",
)
"""Counter ``inbox_websocket_connections_opened_total``: sockets accepted after a valid token;
refused handshakes are not counted."""

WEBSOCKET_OPEN_CONNECTIONS = Gauge(
    "inbox_websocket_open_connections",
    "Operator WebSockets open on this gateway replica now.",
)
"""Gauge ``inbox_websocket_open_connections``: sockets this replica pushes to right now."""

WEBSOCKET_PUSHES = Counter(
    "inbox_websocket_pushes",
    "Events queued for an operator's WebSocket, by event type.",
    ["type"],
)
"""Counter ``inbox_websocket_pushes_total{type}``: events queued to a socket's writer, one per
socket (an event for three sockets counts three). ``type`` is the event's ``type``
(``conversation.updated``, ``insight.delta``)."""

WEBSOCKET_SLOW_CONSUMER_CLOSES = Counter(
    "inbox_websocket_slow_consumer_closes",
    "WebSockets closed with 1013 because their push queue (WS_SEND_QUEUE) was full.",
)
"""Counter ``inbox_websocket_slow_consumer_closes_total``: sockets closed with 1013 because
their client fell ``WS_SEND_QUEUE`` events behind."""

WEBSOCKET_PUSHES_DROPPED = Counter(
    "inbox_websocket_pushes_dropped",
    "Events never sent because their WebSocket was closed as a slow consumer.",
)
"""Counter ``inbox_websocket_pushes_dropped_total``: events discarded when a socket is closed
as slow: the one that did not fit, and those still queued (already counted as pushes)."""

# ------------------------------------------------------------------ the message flow

MESSAGES_RECEIVED = Counter(
    "inbox_messages_received",
    "Messages the gateway accepted (202) and published, by author role.",
    ["author_role"],
)
"""Counter ``inbox_messages_received_total{author_role}`` (gateway): messages accepted with 202
and published on ``messages.submitted``; ``customer`` from the channel API, ``operator`` for
replies. A client's retry with the same ``message_id`` counts again."""

MESSAGES_STORED = Counter(
    "inbox_messages_stored",
    "Messages stored for the first time by messaging, by author role.",
    ["author_role"],
)
"""Counter ``inbox_messages_stored_total{author_role}`` (messaging): messages written to the
system of record, once per ``message_id``. Redeliveries of a stored message are counted in
:data:`REDELIVERIES` (``kind="message"``), not here."""

MESSAGES_ANALYSED = Counter(
    "inbox_messages_analysed",
    "LLM analyses finished by the ai-worker, by insight status.",
    ["status"],
)
"""Counter ``inbox_messages_analysed_total{status}`` (ai-worker): analyses that called the
model, ``available`` or ``unavailable`` (timeout, HTTP error, unreachable, bad output). An
insight republished from the cache is not an analysis (see :data:`REDELIVERIES`)."""

AI_ANALYSIS_DURATION = Histogram(
    "inbox_ai_analysis_duration_seconds",
    "Time one analysis took, waiting for an LLM slot included, in seconds, by insight status.",
    ["status"],
    buckets=AI_BUCKETS_S,
)
"""Histogram ``inbox_ai_analysis_duration_seconds{status}`` (ai-worker): seconds from asking
for an analysis to its outcome, waiting for one of ``AI_MAX_CONCURRENCY`` slots included
(``duration_ms`` of the insight excludes the wait). ``status`` as :data:`MESSAGES_ANALYSED`."""

OUTBOX_UNPUBLISHED_ROWS = Gauge(
    "inbox_outbox_unpublished_rows",
    "Outbox rows committed but not yet published, as last measured by this relay.",
)
"""Gauge ``inbox_outbox_unpublished_rows`` (messaging): outbox rows not yet published, measured
by each replica's relay after its batches and at least every ``OUTBOX_POLL_INTERVAL_S``. Every
replica measures the same table: aggregate with ``max``, not ``sum``."""

OUTBOX_ROWS_PRUNED = Counter(
    "inbox_outbox_rows_pruned",
    "Published outbox rows deleted by this replica once older than OUTBOX_RETENTION_S.",
)
"""Counter ``inbox_outbox_rows_pruned_total`` (messaging): published outbox rows this replica
deleted after their retention (:mod:`messaging.retention`)."""

INBOX_LIST_REBUILDS = Counter(
    "inbox_inbox_list_rebuilds",
    "Inbox list read models rebuilt and written by this relay (at most one per INBOX_INTERVAL_S).",
)
"""Counter ``inbox_inbox_list_rebuilds_total`` (messaging): times this replica's relay rebuilt
the inbox list read model and wrote it to the state store."""

OUTBOX_OLDEST_UNPUBLISHED_AGE = Gauge(
    "inbox_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row in seconds; 0 when none waits.",
)
"""Gauge ``inbox_outbox_oldest_unpublished_age_seconds`` (messaging): seconds since the oldest
unpublished row was committed; 0 when the outbox is drained. Aggregate with ``max``."""

LLM_TOKENS = Counter(
    "inbox_llm_tokens",
    "Tokens of LLM calls as the model server reported them, by token type and operation.",
    ["type", "operation"],
)
"""Counter ``inbox_llm_tokens_total{type, operation}`` (ai-worker): tokens per Ollama answer,
the Prometheus form of the OpenTelemetry GenAI metric ``gen_ai.client.token.usage``
(``type`` is its ``gen_ai.token.type``, ``operation`` its ``gen_ai.operation.name``).
``input`` adds the answer's ``prompt_eval_count`` (prompt tokens Ollama evaluated), ``output``
its ``eval_count`` (tokens generated). Both calls of an analysis count (the tool round and the
streamed insight) and so does a resolution summary, all as ``operation="chat"``; a call that
failed before its final chunk counts nothing. ``rate(...{type="output"}[1m])`` is the tokens
per second the model generates for this process."""

# ------------------------------------------------------------------ Dapr deliveries

DELIVERIES = Counter(
    "inbox_subscription_deliveries",
    "Pub/sub deliveries from the sidecar, by topic and the answer given.",
    ["topic", "result"],
)
"""Counter ``inbox_subscription_deliveries_total{topic, result}`` (every service): deliveries
the sidecar made to a subscription, by topic (dead-letter topics included) and the answer:
``SUCCESS``, ``RETRY`` (redelivered under the Resiliency policy) or ``DROP`` (to the
dead-letter topic)."""

REDELIVERIES = Counter(
    "inbox_redeliveries",
    "Deliveries of work already done, handled without doing it again, by kind.",
    ["kind"],
)
"""Counter ``inbox_redeliveries_total{kind}``: at-least-once delivery at work, each repeat
absorbed: ``message`` (messaging: a ``messages.submitted`` whose ``message_id`` is stored),
``insight`` (messaging: an ``ai.completed`` for a revision already complete or superseded),
``cached_insight`` (ai-worker: a ``message.created``/``analysis.requested`` answered from the
insight cache and republished, without calling the model), ``summary`` (messaging: a
``summary.completed`` already stored or of an earlier resolve), ``cached_summary`` (ai-worker:
a ``summary.requested`` answered from the summary cache)."""

INSIGHT_REDELIVERIES = Counter(
    "inbox_insight_redeliveries",
    "Insights left processing too long, asked for again or given up, by outcome.",
    ["outcome"],
)
"""Counter ``inbox_insight_redeliveries_total{outcome}`` (messaging): insights whose analysis
never came back in time (lost between messaging and the ai-worker, or very late): ``requested``
(its ``message.created``/``analysis.requested`` enqueued again), ``abandoned`` (after
``INSIGHT_MAX_REDELIVERIES`` re-requests, stored ``unavailable``). Any rise means events are
being lost or analyses are slower than ``INSIGHT_REDELIVER_AFTER_S``."""

# ------------------------------------------------------------------ rate limits

RATE_LIMIT_REJECTIONS = Counter(
    "inbox_rate_limit_rejections",
    "Requests refused by a rate limit, by scope.",
    ["scope"],
)
"""Counter ``inbox_rate_limit_rejections_total{scope}`` (gateway): requests refused with 429
by a rate limit; ``scope`` is ``operator`` (the REST API, per operator), ``channel`` (the
customer channel, per API key), ``login``, ``login_address`` and ``login_global`` (per username,
per client address, for everyone), ``customer`` and ``customer_read`` (a widget customer's
writes, and reads and renewals), ``widget_channel`` (widget messages per channel),
``widget_session`` and ``widget_channel_session`` (new widget sessions per client address and
per channel); ``websocket`` counts socket messages dropped or closed for flooding
(``WS_MESSAGE_RATE_LIMIT``)."""


def _initialise() -> None:
    """Create the labelled children whose values are known, so they are exported at 0 from
    the start (``rate()`` and ``increase()`` then see the first event)."""
    for role in AUTHOR_ROLES:
        MESSAGES_RECEIVED.labels(role)
        MESSAGES_STORED.labels(role)
    for status in INSIGHT_STATUSES:
        MESSAGES_ANALYSED.labels(status)
        AI_ANALYSIS_DURATION.labels(status)
    for kind in REDELIVERY_KINDS:
        REDELIVERIES.labels(kind)
    for outcome in INSIGHT_REDELIVERY_OUTCOMES:
        INSIGHT_REDELIVERIES.labels(outcome)
    for scope in RATE_LIMIT_SCOPES:
        RATE_LIMIT_REJECTIONS.labels(scope)
    for token_type in LLM_TOKEN_TYPES:
        for operation in LLM_OPERATIONS:
            LLM_TOKENS.labels(token_type, operation)
    for push_type in ("conversation.updated", "insight.delta"):
        WEBSOCKET_PUSHES.labels(push_type)


_initialise()


def watch_topic(topic: str) -> None:
    """Export :data:`DELIVERIES` for ``topic`` at 0 for each result (called on subscribe)."""
    for result in DELIVERY_RESULTS:
        DELIVERIES.labels(topic, result)


def _observe_http(info: Info) -> None:
    method = info.method if info.method in HTTP_METHODS else "other"
    route = info.modified_handler or "/"  # the gateway's static files are mounted at /
    HTTP_REQUESTS.labels(method, route, info.modified_status).inc()
    HTTP_REQUEST_DURATION.labels(method, route, info.modified_status).observe(
        info.modified_duration
    )


def instrument_http(app: ASGIApp) -> None:
    """Record :data:`HTTP_REQUESTS` and :data:`HTTP_REQUEST_DURATION` for every HTTP request
    to ``app`` (a FastAPI application), except ``/healthz``.

    Call it after adding the other middleware, so that the answers they give themselves
    (401 from the app-token check, 413 from the size limit) are counted too. It does not add
    a ``/metrics`` route: the metrics are served on their own port by :func:`serve`.
    """
    Instrumentator(
        should_group_status_codes=False,
        should_group_untemplated=True,
        excluded_handlers=["^/healthz$"],
    ).add(_observe_http).instrument(app)


@contextmanager
def serve(port: int, host: str = "0.0.0.0") -> Iterator[int | None]:
    """Serve this process's metrics over HTTP at ``http://<host>:<port>/metrics`` while the
    context is open (a thread of ``prometheus_client``'s own server).

    Args:
        port: ``METRICS_PORT``; 0 serves nothing.
        host: the address to listen on (``METRICS_HOST``).

    Yields:
        The port served, or ``None`` when ``port`` is 0.

    Raises:
        OSError: the port cannot be bound; the message names ``METRICS_PORT``.
    """
    if not port:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise OSError(
            exc.errno, f"METRICS_PORT={port}: cannot serve metrics on {host}:{port}: {exc}"
        ) from exc
    log.info("serving metrics", extra={"address": f"http://{host}:{port}/metrics"})
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
