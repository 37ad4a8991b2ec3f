"""LLM enrichment of one customer message: route it, let the model consult the knowledge base,
then stream the insight.

1. The intent step (:mod:`ai_worker.intents`), when the deployment gave it examples, ranks the
   message's intents; the routing step (:mod:`ai_worker.routing`) picks the prompt strategy.
2. The model is offered ``search_knowledge_base`` (Ollama tool calling); the articles found
   are given back to it as ``tool`` messages. A model without tool support skips this round.
3. The insight is asked for as JSON (``format=INSIGHT_SCHEMA``) and streamed.
"""

import asyncio
import json
import logging
import time

import ollama
from inbox_common.events import AiCompleted, InsightStatus, MessageCreated, ReplyStrategy
from inbox_common.knowledge import OTHER, intents
from opentelemetry import trace

from ai_worker.knowledge import SEARCH_TOOL, TOOL_NAME, search_knowledge_base
from ai_worker.learning import IntentStep
from ai_worker.llm import LLM_FAILURES, OllamaChat, OnOutput, describe_failure
from ai_worker.parser import INSIGHT_SCHEMA, InsightParseError, parse_insight
from ai_worker.prompts import insight_messages
from ai_worker.routing import route
from ai_worker.settings import Settings

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

MAX_TOOL_CALLS = 3
"""Searches run per message at most; further calls the model asks for are ignored."""


class Analyser:
    """Ask Ollama for an insight, bounded in time and concurrency; never raises.

    Args:
        settings: the worker's settings (URL, model, timeout, concurrency).
        client: an ``ollama.AsyncClient``; made from ``settings`` when omitted.
        intent_step: the learned intent step; without it (or before it has a model) the
            model's intent is kept when the taxonomy has it, else ``other``.
    """

    def __init__(
        self,
        settings: Settings,
        client: ollama.AsyncClient | None = None,
        intent_step: IntentStep | None = None,
    ) -> None:
        self._settings = settings
        self._intent_step = intent_step
        self._voice = settings.voice()
        self._chat = OllamaChat(settings, client)
        self._slots = asyncio.Semaphore(settings.ai_max_concurrency)
        self._tools = True

    @property
    def slots(self) -> asyncio.Semaphore:
        """The semaphore bounding LLM calls in flight (``ai_max_concurrency``)."""
        return self._slots

    async def analyse(
        self, message: MessageCreated, revision: int = 1, on_output: OnOutput | None = None
    ) -> AiCompleted:
        """Enrich ``message`` as revision ``revision`` of its insight, streaming the model's
        output to ``on_output`` as it comes.

        Returns:
            ``available`` with intent, summary, suggested reply, the strategy and the articles
            used; or ``unavailable`` with ``error`` saying why (Ollama unreachable, HTTP
            error, timeout after ``ollama_timeout_s`` s, a stream that broke off, output that
            is not a valid insight). ``duration_ms`` is the time spent on the LLM calls,
            queueing for a slot excluded. ``trace_id`` is the current trace's, when traced.
        """
        taxonomy = intents()
        model = self._intent_step.model if self._intent_step else None
        # about 15 ms of CPU: off the event loop, which serves the other messages meanwhile
        likely = await asyncio.to_thread(model.predict, message.body) if model else []
        predicted = taxonomy[likely[0][0]] if likely else None
        escalate = model is not None and model.escalates(
            likely, self._settings.ai_escalation_min_score
        )
        strategy = route(message.body, escalate=escalate)
        used: list[str] = []
        async with self._slots:
            started = time.monotonic()
            messages = insight_messages(message.body, strategy, predicted, self._voice)
            try:
                async with asyncio.timeout(self._settings.ollama_timeout_s):
                    used = await self._consult_knowledge(messages, likely)
                    text = await self._chat.stream(messages, INSIGHT_SCHEMA, on_output)
                insight = parse_insight(text)
                if predicted is not None:
                    insight.intent = predicted.name
                elif insight.intent not in taxonomy:
                    insight.intent = OTHER
            except LLM_FAILURES as exc:
                error = describe_failure(exc, self._settings)
            except InsightParseError as exc:
                error = str(exc)
            else:
                return self._completed(message, revision, started, strategy, used, insight)
        log.warning(
            "insight unavailable", extra={"message_id": str(message.message_id), "reason": error}
        )
        return self._completed(message, revision, started, strategy, used, error=error)

    async def _consult_knowledge(
        self, messages: list[dict], likely: list[tuple[str, float]]
    ) -> list[str]:
        """Offer ``search_knowledge_base``; run the searches the model asks for, ranked with
        the message's ``likely`` intents too, and append them to ``messages``. Returns the
        slugs of the articles given to the model."""
        if not self._tools:
            return []
        try:
            reply = await self._chat.ask(messages, [SEARCH_TOOL])
        except ollama.ResponseError as exc:
            if exc.status_code == 400 and "does not support tools" in str(exc.error):
                log.warning("the model has no tool support: replies are not grounded")
                self._tools = False
                return []
            raise
        calls = [c for c in reply.tool_calls or [] if c.function.name == TOOL_NAME]
        if not calls:
            return []
        messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        used: list[str] = []
        for call in calls[:MAX_TOOL_CALLS]:
            query = str(call.function.arguments.get("query", ""))[:200]
            with _tracer.start_as_current_span(f"execute_tool {TOOL_NAME}") as span:
                span.set_attribute("gen_ai.operation.name", "execute_tool")
                span.set_attribute("gen_ai.tool.name", TOOL_NAME)
                found = search_knowledge_base(query, intents=likely)
                span.set_attribute("inbox.knowledge.articles", [a.slug for a in found])
            used += [a.slug for a in found if a.slug not in used]
            result = [{"slug": a.slug, "title": a.title, "text": a.body} for a in found]
            messages.append({"role": "tool", "tool_name": TOOL_NAME, "content": json.dumps(result)})
        return used[:5]

    def _completed(
        self,
        message: MessageCreated,
        revision: int,
        started: float,
        strategy: ReplyStrategy,
        used: list[str],
        insight=None,  # noqa: ANN001
        error: str | None = None,
    ) -> AiCompleted:
        context = trace.get_current_span().get_span_context()
        common = {
            "message_id": message.message_id,
            "conversation_id": message.conversation_id,
            "revision": revision,
            "trace_id": f"{context.trace_id:032x}" if context.is_valid else None,
            "model": self._settings.ollama_model,
            "duration_ms": round((time.monotonic() - started) * 1000),
            "strategy": strategy,
            "articles": used,
        }
        if insight is None:
            return AiCompleted(status=InsightStatus.UNAVAILABLE, error=error, **common)
        return AiCompleted(
            status=InsightStatus.AVAILABLE,
            intent=insight.intent,
            summary=insight.summary,
            suggested_reply=insight.suggested_reply,
            **common,
        )
