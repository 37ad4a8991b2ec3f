"""ai-worker's Dapr subscriptions: ``message.created`` (first analysis) and
``analysis.requested`` (an operator's regenerate) -> analysis -> ``ai.completed``;
``summary.requested`` (a resolve) -> resolution summary -> ``summary.completed``."""

import logging
import time

from dapr.ext.fastapi import DaprApp
from inbox_common import metrics
from inbox_common.events import (
    TOPIC_AI_COMPLETED,
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_INTENT_EXAMPLES_CHANGED,
    TOPIC_MESSAGE_CREATED,
    TOPIC_SUMMARY_COMPLETED,
    TOPIC_SUMMARY_REQUESTED,
    AiCompleted,
    AnalysisRequested,
    AssistantState,
    AuthorRole,
    IntentExamplesChanged,
    MessageCreated,
    SummaryCompleted,
    SummaryRequested,
)
from inbox_common.sidecar import Sidecar
from inbox_common.subscriptions import subscribe

from ai_worker.analysis import Analyser
from ai_worker.assistant import decide, hands_off_first
from ai_worker.learning import IntentStep
from ai_worker.streaming import ReplyStream
from ai_worker.summary import Summariser

log = logging.getLogger(__name__)


def insight_key(message_id: object, revision: int = 1) -> str:
    """State store key caching a finished insight revision, so a redelivery does not call
    the LLM again."""
    return f"ai-worker:insight:{message_id}:{revision}"


async def handle_created(
    sidecar: Sidecar,
    analyser: Analyser,
    event: MessageCreated | AnalysisRequested,
    cache_ttl_s: int,
    stream_interval_ms: int = 0,
) -> AiCompleted | None:
    """Analyse a stored customer message and publish the outcome.

    While the model writes, the partial suggested reply goes out as ``insight.delta`` events,
    at most one per ``stream_interval_ms`` ms (0: none). In an ``answering`` conversation the
    outcome also says whether the reply goes to the customer (``answered``) or the
    conversation to a person (``handoff``): :func:`ai_worker.assistant.decide`.

    Operator messages are acknowledged and skipped (``None``). The outcome is cached in the
    state store before it is published, so a redelivery republishes it without a second LLM
    call. RETRY: the sidecar could not read, write or publish. Never DROP: any LLM failure is
    an ``unavailable`` insight, so every message ends with one.

    Metrics: an analysis is counted in ``inbox_messages_analysed_total{status}`` and timed in
    ``inbox_ai_analysis_duration_seconds{status}``; a cached insight republished counts in
    ``inbox_redeliveries_total{kind="cached_insight"}``.
    """
    if event.author_role is not AuthorRole.CUSTOMER:
        return None
    revision = event.revision if isinstance(event, AnalysisRequested) else 1
    key = insight_key(event.message_id, revision)
    cached = await sidecar.get_state(key)
    ids = {
        "message_id": str(event.message_id),
        "conversation_id": str(event.conversation_id),
        "revision": revision,
    }
    if cached is not None:
        completed = AiCompleted.model_validate_json(cached)
        metrics.REDELIVERIES.labels("cached_insight").inc()
        log.info("republishing cached insight", extra=ids)
    else:
        log.info("analysing message", extra=ids)
        stream = None
        if stream_interval_ms:
            stream = ReplyStream(
                sidecar, event.message_id, event.conversation_id, revision, stream_interval_ms
            )
        answering = event.assistant is AssistantState.ANSWERING and not isinstance(
            event, AnalysisRequested
        )
        if stream is not None:
            stream.to_customer = answering and not hands_off_first(event.body)
        started = time.monotonic()
        completed = await analyser.analyse(event, revision, stream.update if stream else None)
        if answering:
            completed = decide(event.body, completed)
        status = completed.status.value
        metrics.AI_ANALYSIS_DURATION.labels(status).observe(time.monotonic() - started)
        metrics.MESSAGES_ANALYSED.labels(status).inc()
        if stream is not None:
            ids["stream_events"] = stream.events
        await sidecar.save_states({key: completed}, ttl_s=cache_ttl_s)
    await sidecar.publish(TOPIC_AI_COMPLETED, completed)
    log.info(
        "insight published",
        extra={**ids, "status": completed.status, "duration_ms": completed.duration_ms},
    )
    return completed


def summary_key(conversation_id: object, resolution: int) -> str:
    """State store key caching a finished resolution summary, for redeliveries."""
    return f"ai-worker:summary:{conversation_id}:{resolution}"


async def handle_summary_requested(
    sidecar: Sidecar, summariser: Summariser, event: SummaryRequested, cache_ttl_s: int
) -> SummaryCompleted:
    """Summarise a resolved conversation and publish the outcome.

    Cached in the state store before it is published, so a redelivery republishes it without
    a second LLM call. RETRY: the sidecar could not read, write or publish. Never DROP: any
    LLM failure is an ``unavailable`` summary.
    """
    key = summary_key(event.conversation_id, event.resolution)
    ids = {"conversation_id": str(event.conversation_id), "resolution": event.resolution}
    cached = await sidecar.get_state(key)
    if cached is not None:
        completed = SummaryCompleted.model_validate_json(cached)
        metrics.REDELIVERIES.labels("cached_summary").inc()
        log.info("republishing cached summary", extra=ids)
    else:
        log.info("summarising conversation", extra={**ids, "messages": len(event.messages)})
        completed = await summariser.summarise(event)
        await sidecar.save_states({key: completed}, ttl_s=cache_ttl_s)
    await sidecar.publish(TOPIC_SUMMARY_COMPLETED, completed)
    log.info("summary published", extra={**ids, "status": completed.status})
    return completed


def register(
    dapr_app: DaprApp,
    sidecar: Sidecar,
    analyser: Analyser,
    cache_ttl_s: int,
    stream_interval_ms: int = 0,
    summariser: Summariser | None = None,
    intent_step: IntentStep | None = None,
) -> None:
    """Subscribe the worker to ``message.created`` and ``analysis.requested``, to
    ``summary.requested`` when given a ``summariser``, and to ``intent.examples.changed``
    (broadcast: every replica retrains ``intent_step``, when it has one)."""

    async def on_examples(event: IntentExamplesChanged) -> None:
        if intent_step is not None and event.version > intent_step.version:
            await intent_step.learn(sidecar)

    subscribe(dapr_app, TOPIC_INTENT_EXAMPLES_CHANGED, IntentExamplesChanged, on_examples)

    async def on_created(event: MessageCreated | AnalysisRequested) -> None:
        await handle_created(sidecar, analyser, event, cache_ttl_s, stream_interval_ms)

    subscribe(dapr_app, TOPIC_MESSAGE_CREATED, MessageCreated, on_created)
    subscribe(dapr_app, TOPIC_ANALYSIS_REQUESTED, AnalysisRequested, on_created)
    if summariser is not None:

        async def on_summary(event: SummaryRequested) -> None:
            await handle_summary_requested(sidecar, summariser, event, cache_ttl_s)

        subscribe(dapr_app, TOPIC_SUMMARY_REQUESTED, SummaryRequested, on_summary)
