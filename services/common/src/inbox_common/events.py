"""Event models, topic names and Dapr component names shared by every service.

Events travel as CloudEvents through Dapr pub/sub with JSON ``data``; each model below is the
``data`` of one topic. Every event carries ``message_id`` or ``conversation_id`` so that
consumers can be idempotent: Dapr delivers at least once and brokers may reorder.
"""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

PUBSUB = "inbox-pubsub"
"""Dapr pub/sub component for work: each event reaches one replica of each subscribing app
(the app-id is the consumer group). The broker behind it is chosen in component YAML."""
BROADCAST_PUBSUB = "inbox-broadcast"
"""Dapr pub/sub component for fan-out: same broker, but each sidecar consumes with its own
consumer group (``consumerID: {uuid}`` or the broker's equivalent), so every replica of the
gateway receives every event."""
STATE_STORE = "inbox-state"
"""Dapr state store component name holding the read models."""

TOPIC_MESSAGES_SUBMITTED = "messages.submitted"
TOPIC_MESSAGE_CREATED = "message.created"
TOPIC_AI_COMPLETED = "ai.completed"
TOPIC_CONVERSATION_UPDATED = "conversation.updated"
TOPIC_INSIGHT_REQUESTED = "insight.requested"
TOPIC_ANALYSIS_REQUESTED = "analysis.requested"
TOPIC_INSIGHT_DELTA = "insight.delta"
TOPIC_CONVERSATION_CHANGED = "conversation.changed"
TOPIC_SUMMARY_REQUESTED = "summary.requested"
TOPIC_SUMMARY_COMPLETED = "summary.completed"
TOPIC_SEARCH_REQUESTED = "search.requested"
TOPIC_INBOX_PAGE_REQUESTED = "inbox.page.requested"
TOPIC_INTENT_CORRECTED = "intent.corrected"
TOPIC_INTENT_EXAMPLES_CHANGED = "intent.examples.changed"

TOPICS = (
    TOPIC_MESSAGES_SUBMITTED,
    TOPIC_MESSAGE_CREATED,
    TOPIC_AI_COMPLETED,
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_INSIGHT_REQUESTED,
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_INSIGHT_DELTA,
    TOPIC_CONVERSATION_CHANGED,
    TOPIC_SUMMARY_REQUESTED,
    TOPIC_SUMMARY_COMPLETED,
    TOPIC_SEARCH_REQUESTED,
    TOPIC_INBOX_PAGE_REQUESTED,
    TOPIC_INTENT_CORRECTED,
    TOPIC_INTENT_EXAMPLES_CHANGED,
)
"""Every topic the services use; with their dead-letter topics, what a broker must carry."""

BROADCAST_TOPICS = frozenset(
    {TOPIC_CONVERSATION_UPDATED, TOPIC_INSIGHT_DELTA, TOPIC_INTENT_EXAMPLES_CHANGED}
)
"""Topics every replica of their subscriber must see (each gateway's pushes, each
ai-worker's intent step); they travel on :data:`BROADCAST_PUBSUB`."""


def pubsub_for(topic: str) -> str:
    """The Dapr pub/sub component that carries ``topic`` (publishers and subscribers agree)."""
    return BROADCAST_PUBSUB if topic in BROADCAST_TOPICS else PUBSUB


DEAD_LETTER_SUFFIX = ".dead-letter"


def dead_letter_topic(topic: str) -> str:
    """Name of the dead-letter topic for ``topic`` (``"<topic>.dead-letter"``)."""
    return topic + DEAD_LETTER_SUFFIX


# Text the system of record can keep. PostgreSQL refuses NUL in `text` and `\u0000` in
# `jsonb` (https://www.postgresql.org/docs/current/datatype-json.html), and UTF-8 cannot encode
# a lone surrogate (a JSON "\ud800" decodes to one), so either would be accepted at the edge and
# lost on the way in. The other C0 controls are refused with them: no text needs them, and
# they are what terminal escapes and log forgery are made of. Everything else is valid Unicode
# text (bidi overrides, zero-width characters, noncharacters, C1 controls) and kept unchanged.
_UNSTORABLE_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
"""C0 controls but tab, newline and carriage return; lone surrogates."""
_UNSTORABLE_IN_LINE = re.compile(r"[\x00-\x1f\ud800-\udfff]")
"""Every C0 control (a one-line field has no tabs or line breaks either); lone surrogates."""


def _refuse(pattern: re.Pattern[str], allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is None:
            return value
        char = found.group()
        kind = "lone surrogate" if "\ud800" <= char <= "\udfff" else "control character"
        raise PydanticCustomError(
            "unstorable_text",
            "{kind} U+{code} at position {position} is not allowed ({allowed})",
            {
                "kind": kind,
                "code": f"{ord(char):04X}",
                "position": found.start(),
                "allowed": allowed,
            },
        )

    return AfterValidator(check)


def _clean(pattern: re.Pattern[str]) -> AfterValidator:
    def clean(value: str) -> str:
        return pattern.sub(lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else "", value)

    return AfterValidator(clean)


PLAIN_TEXT = _refuse(_UNSTORABLE_IN_TEXT, "only tab, newline and carriage return of the controls")
"""The rule of :data:`PlainText`, to put after other constraints (``Annotated[str,
StringConstraints(...), PLAIN_TEXT]``: a trimmed value is checked)."""
PLAIN_LINE = _refuse(_UNSTORABLE_IN_LINE, "one line: no control characters")
"""The rule of :data:`PlainLine`, to put after other constraints."""

PlainText = Annotated[str, PLAIN_TEXT]
"""Text people write, several lines allowed: refused (``unstorable_text``, a 422 at the
gateway naming the field) when it holds a C0 control character other than tab, newline and
carriage return, or a lone surrogate (U+D800 to U+DFFF). Anything else is kept unchanged."""
PlainLine = Annotated[str, PLAIN_LINE]
"""One line people write (a handle, a subject, a query): as :data:`PlainText`, and no tab or
line break either."""
CleanText = Annotated[str, _clean(_UNSTORABLE_IN_TEXT)]
"""Text machines write (model output, error messages): what :data:`PlainText` refuses is
removed instead (a lone surrogate becomes U+FFFD), since nobody is there to write it again.
Removing only shortens, so length bounds still hold."""

MAX_BODY_CHARS = 4000
"""Longest message body accepted, in characters (the gateway enforces it, events repeat it)."""
MAX_SUBJECT_CHARS = 200
"""Longest conversation subject, in characters."""

MessageBody = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BODY_CHARS),
    PLAIN_TEXT,
]
"""A message as stored: trimmed, 1 to :data:`MAX_BODY_CHARS` characters, :data:`PlainText`."""
AuthorId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), PLAIN_LINE
]
"""A customer handle or operator username: trimmed, 1 to 128 characters, :data:`PlainLine`."""
Subject = Annotated[str, StringConstraints(max_length=MAX_SUBJECT_CHARS), PLAIN_LINE]
"""A conversation subject: up to :data:`MAX_SUBJECT_CHARS` characters, :data:`PlainLine`."""


class AuthorRole(StrEnum):
    CUSTOMER = "customer"
    OPERATOR = "operator"
    ASSISTANT = "assistant"
    """The AI assistant answering a customer itself (a chat widget channel in ``answer`` mode);
    only messaging writes these, from an ``ai.completed`` with ``answered``."""


class AssistantMode(StrEnum):
    """What the AI does on a channel (a chat widget channel's ``assistant``)."""

    OFF = "off"
    """No AI: operators only; customer messages get no insight, resolutions no summary."""
    SUGGEST = "suggest"
    """The AI suggests replies to operators (every channel API message)."""
    ANSWER = "answer"
    """The AI answers the customer itself until it hands the conversation to a person."""


class AssistantState(StrEnum):
    """What the AI does in one conversation: ``answering`` until it hands the conversation to
    a person (``handed_off``, for good), or ``off`` for good (a channel without AI). A
    conversation that only gets suggestions has none."""

    ANSWERING = "answering"
    HANDED_OFF = "handed_off"
    OFF = "off"


class InsightStatus(StrEnum):
    PROCESSING = "processing"
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"


class ConversationStatus(StrEnum):
    """Where a conversation stands: ``open`` (to work on), ``pending`` (waiting for the
    customer) or ``resolved``. A new customer message makes a pending or resolved one open."""

    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"


class ReplyStrategy(StrEnum):
    """How the ai-worker prompts the model for one message (its routing step)."""

    SHORT_ANSWER = "short_answer"
    CAREFUL_ANALYSIS = "careful_analysis"
    ESCALATION = "escalation"


ArticleSlug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]


class Event(BaseModel):
    """Base of every event: unknown fields are ignored so producers can add fields first."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class MessageSubmitted(Event):
    """A message someone wants stored.

    Topic ``messages.submitted``; producer: gateway (customer channel and operator replies);
    consumer: messaging. Idempotency key: ``message_id``.
    """

    message_id: UUID = Field(description="Unique id made by the client or the gateway")
    conversation_id: UUID = Field(description="Conversation the message belongs to")
    author_role: AuthorRole = Field(description="`customer` or `operator`")
    author_id: AuthorId = Field(description="Customer handle or operator username")
    body: MessageBody = Field(description=f"Message text, 1 to {MAX_BODY_CHARS} characters")
    subject: Subject | None = Field(
        default=None, description="Subject for a new conversation, if any"
    )
    submitted_at: datetime = Field(description="When the gateway accepted it (UTC)")
    assistant_mode: AssistantMode = Field(
        default=AssistantMode.SUGGEST,
        description=(
            "The AI's mode on the channel of a message that opens a conversation: `answer` "
            "starts it `answering`, `off` starts it without AI, `suggest` as before"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_assistant_answers(cls, data: object) -> object:
        # events published before assistant_mode said `assistant_answers: true`
        legacy = isinstance(data, dict) and data.get("assistant_answers")
        if legacy and "assistant_mode" not in data:
            return {**data, "assistant_mode": AssistantMode.ANSWER}
        return data


class MessageCreated(MessageSubmitted):
    """A message stored in PostgreSQL.

    Topic ``message.created``; producer: messaging (through its outbox), for customer
    messages of conversations with AI (not ``off``); consumer: ai-worker. Idempotency key:
    ``message_id``.
    """

    seq: int = Field(ge=1, description="Position in the conversation, from 1")
    created_at: datetime = Field(description="When messaging stored it (UTC)")
    assistant: AssistantState | None = Field(
        default=None, description="The conversation's assistant state once this was stored"
    )


class InsightRequested(Event):
    """An operator asks for a fresh insight on a customer message ("Regenerate").

    Topic ``insight.requested``; producer: gateway; consumer: messaging, which starts a new
    revision unless one is already being analysed. Idempotency key: ``request_id``.
    """

    request_id: UUID = Field(description="Unique per request, made by the gateway")
    message_id: UUID
    conversation_id: UUID
    requested_by: AuthorId = Field(description="Operator username")
    requested_at: datetime = Field(description="When the gateway accepted it (UTC)")


class AnalysisRequested(MessageCreated):
    """A stored customer message to analyse again, as revision ``revision`` of its insight.

    Topic ``analysis.requested``; producer: messaging (through its outbox); consumer:
    ai-worker. Idempotency key: ``(message_id, revision)``.
    """

    revision: int = Field(ge=2, description="Insight revision this analysis produces")
    requested_by: AuthorId = Field(description="Operator who asked for it")


class AiCompleted(Event):
    """The outcome of LLM enrichment for one customer message.

    Topic ``ai.completed``; producer: ai-worker; consumer: messaging. Idempotency key:
    ``(message_id, revision)`` (the first completion stored for a revision wins; one for an
    older revision is stale).
    """

    message_id: UUID
    conversation_id: UUID
    revision: int = Field(default=1, ge=1, description="1 for the first analysis, +1 per request")
    status: Literal[InsightStatus.AVAILABLE, InsightStatus.UNAVAILABLE] = Field(
        description="`available` with the fields below, or `unavailable` with `error`"
    )
    intent: CleanText | None = Field(default=None, max_length=64)
    summary: CleanText | None = Field(default=None, max_length=400)
    suggested_reply: CleanText | None = Field(default=None, max_length=2000)
    model: CleanText | None = Field(default=None, max_length=128, description="Ollama model name")
    duration_ms: int | None = Field(default=None, ge=0, description="LLM call time in ms")
    error: CleanText | None = Field(default=None, max_length=500, description="Why unavailable")
    trace_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="W3C trace id of the analysis, for a link to the trace (None untraced)",
    )
    strategy: ReplyStrategy | None = Field(
        default=None, description="The prompt strategy the routing step chose"
    )
    articles: list[ArticleSlug] = Field(
        default_factory=list,
        max_length=5,
        description="Help articles the model was given through search_knowledge_base",
    )
    answered: bool = Field(
        default=False,
        description=(
            "In an `answering` conversation: the suggested reply goes to the customer as the "
            "assistant's message"
        ),
    )
    handoff: CleanText | None = Field(
        default=None,
        max_length=300,
        description="In an `answering` conversation: why it goes to a person instead",
    )


class InsightDelta(Event):
    """The suggested reply as far as the model has written it, while it writes.

    Topic ``insight.delta`` (broadcast); producer: ai-worker, at most one per
    ``AI_STREAM_INTERVAL_MS`` per message; consumer: every gateway replica, which pushes it to
    its sockets. Best effort and never stored: the ``ai.completed`` insight replaces it. Each
    carries the whole partial text, so a lost or reordered one costs nothing; a lower ``seq``
    than one already shown is stale.
    """

    message_id: UUID
    conversation_id: UUID
    revision: int = Field(ge=1, description="Insight revision being written")
    seq: int = Field(ge=1, description="1, 2, 3... per message and revision")
    text: CleanText = Field(max_length=2000, description="The suggested reply so far")
    to_customer: bool = Field(
        default=False,
        description=(
            "The AI assistant is writing this reply to the customer (an `answering` "
            "conversation, no handoff decided yet): the gateway streams it to their widget too"
        ),
    )


class ConversationChanged(Event):
    """An operator changes a conversation's status, its assignee, or both; or the customer
    ends the chat in the widget (it is resolved).

    Topic ``conversation.changed``; producer: gateway (``PATCH /api/v1/conversations/{id}``,
    ``POST /api/v1/widget/conversation/end``);
    consumer: messaging, which applies it, logs it and, when it resolves the conversation,
    asks for a resolution summary. Idempotency key: ``request_id``.

    The assignee is encoded without a sentinel: ``assignee_set`` says whether the assignee
    changes at all, and then ``assignee`` is the new one (``None`` unassigns).
    """

    request_id: UUID = Field(description="Unique per request, made by the gateway")
    conversation_id: UUID
    status: ConversationStatus | None = Field(
        default=None, description="The new status, or None to leave it"
    )
    assignee_set: bool = Field(default=False, description="Whether the assignee changes")
    assignee: AuthorId | None = Field(
        default=None, description="The new assignee's username (None: unassigned)"
    )
    changed_by: AuthorId = Field(
        description="Operator username, or the customer's handle when they end the chat"
    )
    changed_at: datetime = Field(description="When the gateway accepted it (UTC)")
    reason: str | None = Field(
        default=None,
        max_length=200,
        description='Why, when not an operator\'s own choice ("the customer ended the chat")',
    )

    @model_validator(mode="after")
    def _something_changes(self) -> "ConversationChanged":
        if self.status is None and not self.assignee_set:
            raise ValueError("a change needs a status or assignee_set")
        if self.assignee is not None and not self.assignee_set:
            raise ValueError("assignee given without assignee_set")
        return self


SUMMARY_MAX_MESSAGES = 50
"""Most messages (the latest) a resolution summary is asked for."""
SUMMARY_MAX_CHARS = 12_000
"""Most characters of message text a resolution summary is asked for (the latest messages
first; one longer message is cut)."""
SUMMARY_MAX_TEXT = 1000
"""Longest resolution summary stored, in characters."""


class TranscriptLine(Event):
    """One message of a transcript sent for summarising."""

    role: AuthorRole
    body: Annotated[str, StringConstraints(max_length=MAX_BODY_CHARS), PLAIN_TEXT]


class SummaryRequested(Event):
    """A resolved conversation to summarise, as of its ``resolution``-th resolve.

    Topic ``summary.requested``; producer: messaging (through its outbox, in the transaction
    that resolves the conversation); consumer: ai-worker. Idempotency key:
    ``(conversation_id, resolution)``.
    """

    conversation_id: UUID
    resolution: int = Field(ge=1, description="1 for the first resolve, +1 per later resolve")
    messages: list[TranscriptLine] = Field(
        max_length=SUMMARY_MAX_MESSAGES,
        description=(
            f"The latest messages, oldest first: at most {SUMMARY_MAX_MESSAGES}, "
            f"{SUMMARY_MAX_CHARS} characters in all"
        ),
    )
    omitted: int = Field(default=0, ge=0, description="Earlier messages left out of the bound")
    requested_by: AuthorId = Field(description="Operator who resolved it")


class SummaryCompleted(Event):
    """The outcome of summarising a resolved conversation.

    Topic ``summary.completed``; producer: ai-worker; consumer: messaging, which stores it
    only for the conversation's current resolution. Idempotency key:
    ``(conversation_id, resolution)`` (the first completion wins).
    """

    conversation_id: UUID
    resolution: int = Field(ge=1)
    status: Literal[InsightStatus.AVAILABLE, InsightStatus.UNAVAILABLE] = Field(
        description="`available` with `summary`, or `unavailable` with `error`"
    )
    summary: CleanText | None = Field(default=None, max_length=SUMMARY_MAX_TEXT)
    model: CleanText | None = Field(default=None, max_length=128, description="Ollama model name")
    duration_ms: int | None = Field(default=None, ge=0, description="LLM call time in ms")
    error: CleanText | None = Field(default=None, max_length=500, description="Why unavailable")


SEARCH_MAX_QUERY_CHARS = 200
"""Longest search query, in characters after trimming."""
SEARCH_MAX_LIMIT = 50
"""Most conversations one search returns."""
SEARCH_RESULT_TTL_S = 60
"""How long a search result stays in the state store, in seconds; a request older than this
is not run (nobody waits for it any more)."""

SearchQuery = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SEARCH_MAX_QUERY_CHARS),
    PLAIN_LINE,
]


class SearchRequested(Event):
    """An operator searches the conversations (PostgreSQL full-text search).

    Topic ``search.requested``; producer: gateway (``GET /api/v1/conversations/search``);
    consumer: messaging, which runs the query and writes a
    :class:`~inbox_common.read_models.SearchResult` under :func:`search_key` with a TTL of
    :data:`SEARCH_RESULT_TTL_S`, where the gateway waits for it. Idempotency key:
    ``request_id`` (running it twice writes the same key again).
    """

    request_id: UUID = Field(description="Unique per search, made by the gateway")
    query: SearchQuery = Field(
        description=f"Web-search syntax (`websearch_to_tsquery`), 1 to {SEARCH_MAX_QUERY_CHARS} "
        'characters: words, "quoted phrases", `or`, `-excluded`'
    )
    limit: int = Field(default=20, ge=1, le=SEARCH_MAX_LIMIT, description="Most conversations")
    requested_by: AuthorId = Field(description="Operator username")
    requested_at: AwareDatetime | None = Field(
        default=None, description="When the gateway accepted it (UTC); None: run regardless"
    )


INBOX_PAGE_MAX_LIMIT = 200
"""Most conversations in one page of the inbox."""
INBOX_MAX_OFFSET = 1_000_000
"""Deepest offset a page of the inbox may start at."""


class InboxPageRequested(Event):
    """An operator pages the inbox past the newest :data:`INBOX_MAX_ITEMS` conversations,
    which the inbox list read model holds; older ones are read from PostgreSQL.

    Topic ``inbox.page.requested``; producer: gateway (``GET /api/v1/conversations`` with
    ``offset + limit`` past the list); consumer: messaging, which writes an
    :class:`~inbox_common.read_models.InboxPageResult` under :func:`inbox_page_key` with a TTL
    of :data:`SEARCH_RESULT_TTL_S`, where the gateway waits for it. Idempotency key:
    ``request_id`` (running it twice writes the same key again).
    """

    request_id: UUID = Field(description="Unique per request, made by the gateway")
    offset: int = Field(ge=0, le=INBOX_MAX_OFFSET, description="Conversations to skip")
    limit: int = Field(ge=1, le=INBOX_PAGE_MAX_LIMIT, description="Most conversations")
    requested_by: AuthorId = Field(description="Operator username")
    requested_at: AwareDatetime | None = Field(
        default=None, description="When the gateway accepted it (UTC); None: run regardless"
    )


class ConversationUpdated(Event):
    """A conversation's read model changed in the state store.

    Topic ``conversation.updated``; producer: messaging (through its outbox, after writing the
    read model); consumer: every gateway replica (broadcast). Idempotency key:
    ``(conversation_id, version)``; a lower version than one already seen is stale.
    """

    conversation_id: UUID
    version: int = Field(ge=1, description="Monotonic per conversation")
    reason: Literal[
        "message.created",
        "ai.completed",
        "insight.requested",
        "conversation.changed",
        "summary.completed",
        "intent.corrected",
    ] = Field(description="What changed")


INTENT_NAME = r"^[a-z0-9][a-z0-9_?-]*$"
"""What an intent name looks like (the taxonomy's, :mod:`inbox_common.knowledge`)."""


class IntentCorrected(Event):
    """An operator gives a customer message its right intent.

    Topic ``intent.corrected``; producer: gateway (``PUT /api/v1/conversations/{id}/messages/
    {message_id}/intent``); consumer: messaging, which stores the message as a labelled example
    (who and when; the latest correction of a message wins), sets the insight's intent and
    announces ``intent.examples.changed``. Idempotency key: ``request_id``.
    """

    request_id: UUID = Field(description="Unique per request, made by the gateway")
    conversation_id: UUID
    message_id: UUID
    intent: str = Field(pattern=INTENT_NAME, max_length=64, description="One of the taxonomy")
    corrected_by: AuthorId = Field(description="Operator username")
    corrected_at: datetime = Field(description="When the gateway accepted it (UTC)")


class IntentExamplesChanged(Event):
    """The labelled examples read model (``intent-examples``) was rewritten.

    Topic ``intent.examples.changed``; producer: messaging (through its outbox, after writing
    the read model); consumer: every ai-worker replica (broadcast), which retrains its intent
    step on it. Idempotency key: ``version``; a lower one than already learned is stale.
    """

    version: int = Field(ge=1, description="Grows with every correction stored")
    count: int = Field(ge=0, description="Labelled examples in the read model")


INBOX_MAX_ITEMS = 1000
"""Most conversations kept in the inbox list read model."""
