"""Read models that messaging projects into the Dapr state store and the gateway serves.

Keys: :func:`inbox_common.keys.conversation_key` holds a :class:`Conversation`;
:data:`inbox_common.keys.INBOX_KEY` holds an :class:`Inbox`. Messaging is the only writer;
the gateway only reads, so it never needs a PostgreSQL connection.
"""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from inbox_common.events import (
    AssistantState,
    AuthorRole,
    ConversationStatus,
    InsightStatus,
    ReplyStrategy,
)

EVENT_LOG_ITEMS = 200
"""Most event-log entries (the latest) a conversation read model carries."""


class ArticleRef(BaseModel):
    """A help article an insight was grounded on (``GET /api/v1/knowledge/{slug}``)."""

    slug: str
    title: str


class Insight(BaseModel):
    """AI enrichment of one customer message; ``processing`` until the ai-worker answers."""

    status: InsightStatus
    intent: str | None = None
    summary: str | None = None
    suggested_reply: str | None = Field(
        default=None, description="Shown to the operator for review; never sent on its own"
    )
    model: str | None = None
    duration_ms: int | None = Field(default=None, description="LLM call time in ms")
    error: str | None = Field(default=None, description="Why the insight is unavailable")
    revision: int = Field(default=1, description="1 for the first analysis, +1 per regenerate")
    requested_by: str | None = Field(
        default=None, description="Operator who asked for this revision (None for the first)"
    )
    trace_id: str | None = Field(
        default=None, description="W3C trace id of the analysis that produced it, if traced"
    )
    strategy: ReplyStrategy | None = Field(
        default=None, description="Prompt strategy: short_answer, careful_analysis, escalation"
    )
    articles: list[ArticleRef] = Field(
        default_factory=list, description="Help articles the model consulted"
    )


class Message(BaseModel):
    message_id: UUID
    seq: int = Field(description="Position in the conversation, from 1")
    author_role: AuthorRole
    author_id: str
    body: str
    submitted_at: datetime
    created_at: datetime
    insight: Insight | None = Field(default=None, description="Customer messages only")


class ConversationSummary(BaseModel):
    """One row of the inbox list."""

    conversation_id: UUID
    customer_id: str
    subject: str | None = None
    last_message_preview: str = Field(description="First 140 characters of the last message")
    last_author_role: AuthorRole
    last_activity_at: datetime
    message_count: int
    version: int = Field(description="Bumped on every change; see ConversationUpdated")
    awaiting_reply: bool = Field(description="The last message is the customer's")
    latest_intent: str | None = None
    latest_insight_status: InsightStatus | None = None
    status: ConversationStatus = Field(
        default=ConversationStatus.OPEN, description="open, pending or resolved"
    )
    assignee: str | None = Field(default=None, description="Operator username, if assigned")


class ConversationEvent(BaseModel):
    """One entry of a conversation's event log.

    ``kind`` and ``data``: ``message`` (``message_id``, ``seq``, ``author_role``), ``insight``
    (``message_id``, ``revision``, ``status``: ``requested``, ``available`` or
    ``unavailable``; ``intent`` or ``error``), ``status`` (``from``, ``to``; ``reason`` when
    not an operator's), ``assignment`` (``from``, ``to``: usernames or None), ``summary``
    (``resolution``, ``status``, ``error``).
    """

    id: int = Field(description="Increasing in the order the changes were stored")
    kind: Literal["message", "insight", "status", "assignment", "summary", "handoff"]
    actor: str | None = Field(
        default=None, description="Operator or customer who caused it; None for the AI"
    )
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class ResolutionSummary(BaseModel):
    """The AI summary of the whole conversation, made when it was last resolved."""

    resolution: int = Field(description="Which resolve it belongs to: 1, 2, ...")
    status: InsightStatus = Field(description="processing, then available or unavailable")
    text: str | None = None
    error: str | None = Field(default=None, description="Why it is unavailable")
    model: str | None = None
    requested_at: datetime
    completed_at: datetime | None = None


class Conversation(BaseModel):
    """A conversation with all its messages, oldest first."""

    conversation_id: UUID
    customer_id: str
    subject: str | None = None
    created_at: datetime
    last_activity_at: datetime
    version: int
    summary: ConversationSummary = Field(description="The conversation's inbox row")
    messages: list[Message]
    status: ConversationStatus = Field(default=ConversationStatus.OPEN)
    assignee: str | None = Field(default=None, description="Operator username, if assigned")
    resolved_at: datetime | None = Field(default=None, description="Set while resolved")
    resolution_summary: ResolutionSummary | None = Field(
        default=None, description="Of the latest resolve; None if never resolved"
    )
    events: list[ConversationEvent] = Field(
        default_factory=list,
        description=f"The event log, oldest first: at most the latest {EVENT_LOG_ITEMS}",
    )
    assistant: AssistantState | None = Field(
        default=None,
        description=(
            "answering or handed_off (the AI assistant answers the customer itself, or did),"
            " off (no AI at all); None: it only suggests"
        ),
    )
    handoff_reason: str | None = Field(
        default=None, description="Why the assistant handed the conversation to a person"
    )


class Inbox(BaseModel):
    """The inbox list: at most ``INBOX_MAX_ITEMS`` summaries, newest activity first."""

    items: list[ConversationSummary]
    total: int = Field(description="All conversations in the system of record")


class InboxPageResult(BaseModel):
    """The answer to one ``inbox.page.requested``, under ``inbox-page:{request_id}`` for a
    minute. Written by messaging, read by the gateway that published the request."""

    request_id: UUID
    items: list[ConversationSummary] = Field(description="Newest activity first")
    took_ms: float = Field(description="Time messaging spent on the query, in ms")


class HeadlinePart(BaseModel):
    """One piece of a search headline; the page renders each as text and marks matches."""

    text: str
    match: bool = Field(default=False, description="A word the query matched")


class SearchHit(ConversationSummary):
    """One conversation a search found: its inbox row, the rank and the best excerpt."""

    rank: float = Field(description="Sum of `ts_rank` over the matching subject and messages")
    headline: list[HeadlinePart] = Field(
        description="An excerpt of the best-matching message (or subject), as plain-text parts"
    )


class SearchResult(BaseModel):
    """The answer to one ``search.requested``, under ``search:{request_id}`` for a minute.

    Written by messaging, read by the gateway that published the request.
    """

    request_id: UUID
    query: str
    items: list[SearchHit] = Field(description="Best match first; empty when nothing matched")
    took_ms: float = Field(description="Time messaging spent on the query, in ms")
    error: str | None = Field(
        default=None,
        description="Why messaging refused the query (only excluded words, or too broad to rank"
        " within its statement timeout); the gateway answers 422 with it. None when answered",
    )


class LabelledExample(BaseModel):
    """A customer message and the intent an operator gave it."""

    text: str
    intent: str
    corrected_by: str
    corrected_at: datetime


class IntentExamples(BaseModel):
    """The operators' corrections, newest last: what the ai-worker's intent step learns from
    beside ``AI_INTENT_EXAMPLES`` (key :data:`inbox_common.keys.INTENT_EXAMPLES_KEY`)."""

    version: int = Field(ge=0, description="Grows with every correction stored")
    examples: list[LabelledExample] = Field(default_factory=list)
