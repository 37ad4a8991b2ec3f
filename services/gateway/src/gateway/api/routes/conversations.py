"""The operators' REST API: the inbox, searching it, one conversation, marking it seen,
operator replies, regenerating an insight, changing a conversation's status and assignee.

Reads come from the read models messaging projects into the Dapr state store; a reply is
published as ``messages.submitted`` and shows up once messaging has stored it; a regenerate
request is published as ``insight.requested`` and shows up as the insight going back to
``processing``; a status or assignee change is published as ``conversation.changed``.

A search is a query through pub/sub and the state store: published as ``search.requested``,
answered by messaging (PostgreSQL full-text search) under ``search:{request_id}``, where the
route waits for it. A page of the inbox past the newest ``INBOX_MAX_ITEMS`` conversations (the
inbox list read model) is read the same way: ``inbox.page.requested``, answered under
``inbox-page:{request_id}``. What each operator has seen lives under ``operator:{username}:seen``
(:mod:`gateway.core.seen`), so the inbox marks unread conversations per operator.
"""

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, HTTPException, Query, Response, status
from inbox_common.events import (
    INBOX_MAX_OFFSET,
    INBOX_PAGE_MAX_LIMIT,
    SEARCH_MAX_LIMIT,
    SEARCH_MAX_QUERY_CHARS,
    TOPIC_CONVERSATION_CHANGED,
    TOPIC_INBOX_PAGE_REQUESTED,
    TOPIC_INSIGHT_REQUESTED,
    TOPIC_SEARCH_REQUESTED,
    AuthorId,
    AuthorRole,
    ConversationChanged,
    ConversationStatus,
    InboxPageRequested,
    InsightRequested,
    InsightStatus,
    MessageBody,
    SearchRequested,
)
from inbox_common.keys import INBOX_KEY, conversation_key, inbox_page_key, search_key
from inbox_common.read_models import (
    Conversation,
    ConversationSummary,
    Inbox,
    InboxPageResult,
    SearchHit,
    SearchResult,
)
from inbox_common.sidecar import Sidecar
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.deps import CurrentOperator, SeenDep, SettingsDep, SidecarDep
from gateway.api.publishing import Accepted, ChangeAccepted, ask, publish, submit
from gateway.core.seen import inbox_unread_count, is_unread

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


class InboxItem(ConversationSummary):
    """An inbox row as the calling operator sees it."""

    unread: bool = Field(description="Changed since this operator last saw it (version above)")
    seen_version: int = Field(description="The version this operator last saw; 0 if never")


class InboxPage(BaseModel):
    items: list[InboxItem] = Field(description="Newest activity first")
    total: int
    limit: int
    offset: int
    unread_count: int = Field(
        description="Conversations unread by the calling operator in the whole inbox list"
    )


class ReplyRequest(BaseModel):
    message_id: UUID | None = Field(
        default=None, description="Idempotency key; the gateway makes one when omitted"
    )
    body: MessageBody


async def read_conversation(sidecar: Sidecar, conversation_id: UUID) -> Conversation:
    """The conversation read model; 404 when messaging has not stored it."""
    raw = await sidecar.get_state(conversation_key(conversation_id))
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"conversation {conversation_id} not found")
    return Conversation.model_validate_json(raw)


@router.get(
    "",
    responses={
        503: {"description": "Bus or state store down"},
        504: {"description": "A page past the list: messaging did not answer in time"},
    },
)
async def list_conversations(
    operator: CurrentOperator,
    sidecar: SidecarDep,
    seen_store: SeenDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=INBOX_PAGE_MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0, le=INBOX_MAX_OFFSET)] = 0,
) -> InboxPage:
    """The inbox, newest activity first, ``limit`` items from ``offset``, each marked
    ``unread`` for the calling operator; ``unread_count`` counts the whole inbox
    (:func:`~gateway.core.seen.inbox_unread_count`).

    The newest ``INBOX_MAX_ITEMS`` conversations come from the inbox list read model. A page
    that reaches past them is read from PostgreSQL through messaging (``inbox.page.requested``,
    answered in the state store): 504 when that answer does not come within
    ``SEARCH_TIMEOUT_S``.
    """
    raw, seen = await asyncio.gather(
        sidecar.get_state(INBOX_KEY), seen_store.read(operator.username)
    )
    inbox = Inbox.model_validate_json(raw) if raw else Inbox(items=[], total=0)
    items = inbox.items[offset : offset + limit]
    if offset + limit > len(inbox.items) and len(inbox.items) < inbox.total:
        page = await _read_past_list(
            sidecar, operator.username, offset, limit, settings.search_timeout_s
        )
        items = page.items
    return InboxPage(
        items=[
            InboxItem(
                **s.model_dump(),
                unread=is_unread(s, seen),
                seen_version=seen.get(str(s.conversation_id), 0),
            )
            for s in items
        ],
        total=inbox.total,
        limit=limit,
        offset=offset,
        unread_count=inbox_unread_count(inbox, seen),
    )


async def _read_past_list(
    sidecar: Sidecar, username: str, offset: int, limit: int, timeout_s: float
) -> InboxPageResult:
    """One page of the inbox from messaging; 503 when the bus is down, 504 when no answer."""
    event = InboxPageRequested(
        request_id=uuid4(),
        offset=offset,
        limit=limit,
        requested_by=username,
        requested_at=datetime.now(UTC),
    )
    key = inbox_page_key(event.request_id)
    raw = await ask(sidecar, TOPIC_INBOX_PAGE_REQUESTED, event, key, timeout_s, "inbox page")
    return InboxPageResult.model_validate_json(raw)


class SearchItem(SearchHit):
    """A conversation a search found, as the calling operator sees it."""

    unread: bool = Field(description="Changed since this operator last saw it")
    seen_version: int = Field(description="The version this operator last saw; 0 if never")


class SearchPage(BaseModel):
    request_id: UUID
    query: str = Field(description="The query as searched (trimmed)")
    limit: int
    items: list[SearchItem] = Field(description="Best match first; empty when nothing matched")
    took_ms: float = Field(description="From publishing the request to reading the answer, ms")
    search_ms: float = Field(description="Time messaging spent in PostgreSQL, in ms")


@router.get(
    "/search",
    responses={
        422: {
            "description": f"q empty or over {SEARCH_MAX_QUERY_CHARS} characters; bad limit;"
            " q too broad (only -excluded words, or matching too much to rank in time)"
        },
        503: {"description": "Bus or state store down"},
        504: {"description": "Messaging did not answer within SEARCH_TIMEOUT_S"},
    },
)
async def search_conversations(
    operator: CurrentOperator,
    sidecar: SidecarDep,
    seen_store: SeenDep,
    settings: SettingsDep,
    q: Annotated[str, Query(description='Words, "a phrase", `or`, `-word`')],
    limit: Annotated[int, Query(ge=1, le=SEARCH_MAX_LIMIT)] = 20,
) -> SearchPage:
    """Full-text search over every conversation's subject and messages (PostgreSQL,
    English stemming: "cards" finds "card"), best match first, with a plain-text headline
    of the best-matching message (``headline``: parts, ``match`` on the words found).

    The gateway publishes ``search.requested`` and waits up to ``SEARCH_TIMEOUT_S`` for
    messaging's answer in the state store: 504 when it does not come. 422 when ``q`` is
    empty or longer than 200 characters after trimming, or holds a control character, and
    when messaging refuses it as too broad: only ``-excluded`` words, or more matches than it
    can rank within ``SEARCH_STATEMENT_TIMEOUT_MS``.
    """
    query = q.strip()
    if not 1 <= len(query) <= SEARCH_MAX_QUERY_CHARS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"q: give 1 to {SEARCH_MAX_QUERY_CHARS} characters after trimming, got {len(query)}",
        )
    if any(ord(c) < 32 for c in query):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "q: control characters")
    event = SearchRequested(
        request_id=uuid4(),
        query=query,
        limit=limit,
        requested_by=operator.username,
        requested_at=datetime.now(UTC),
    )
    started = time.monotonic()
    raw, seen = await asyncio.gather(
        ask(
            sidecar,
            TOPIC_SEARCH_REQUESTED,
            event,
            search_key(event.request_id),
            settings.search_timeout_s,
            "search",
        ),
        seen_store.read(operator.username),
    )
    took_ms = (time.monotonic() - started) * 1000
    result = SearchResult.model_validate_json(raw)
    if result.error:  # refused by messaging: too broad to answer within its bounds
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, result.error)
    return SearchPage(
        request_id=event.request_id,
        query=query,
        limit=limit,
        items=[
            SearchItem(
                **hit.model_dump(),
                unread=is_unread(hit, seen),
                seen_version=seen.get(str(hit.conversation_id), 0),
            )
            for hit in result.items
        ],
        took_ms=round(took_ms, 1),
        search_ms=result.took_ms,
    )


@router.get("/{conversation_id}", responses={404: {"description": "Unknown conversation"}})
async def get_conversation(
    conversation_id: UUID, _: CurrentOperator, sidecar: SidecarDep
) -> Conversation:
    """One conversation with its messages (oldest first) and their AI insights."""
    return await read_conversation(sidecar, conversation_id)


@router.post(
    "/{conversation_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "Unknown conversation"}, 503: {"description": "Bus down"}},
)
async def reply(
    conversation_id: UUID, body: ReplyRequest, operator: CurrentOperator, sidecar: SidecarDep
) -> Accepted:
    """Send an operator reply. Accepted for delivery; retry with the same ``message_id``."""
    await read_conversation(sidecar, conversation_id)
    return await submit(
        sidecar,
        conversation_id,
        AuthorRole.OPERATOR,
        operator.username,
        body.body,
        message_id=body.message_id,
    )


class InsightRequestAccepted(BaseModel):
    request_id: UUID
    message_id: UUID
    conversation_id: UUID
    status: Literal["accepted"] = "accepted"


@router.post(
    "/{conversation_id}/messages/{message_id}/regenerate-insight",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "Unknown conversation or message"},
        409: {"description": "Not a customer message, or its insight is being made"},
        503: {"description": "Bus down"},
    },
)
async def regenerate_insight(
    conversation_id: UUID, message_id: UUID, operator: CurrentOperator, sidecar: SidecarDep
) -> InsightRequestAccepted:
    """Ask the AI for a fresh insight on a customer message (a new revision replaces the
    shown one once it is ready). 409 while an analysis of the message is in progress."""
    conversation = await read_conversation(sidecar, conversation_id)
    message = next((m for m in conversation.messages if m.message_id == message_id), None)
    if message is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"message {message_id} not found")
    if message.insight is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "this message has no insight: an operator's or assistant's message, or a channel"
            " without AI",
        )
    if message.insight.status is InsightStatus.PROCESSING:
        raise HTTPException(status.HTTP_409_CONFLICT, "the insight is already being made")
    event = InsightRequested(
        request_id=uuid4(),
        message_id=message_id,
        conversation_id=conversation_id,
        requested_by=operator.username,
        requested_at=datetime.now(UTC),
    )
    await publish(sidecar, TOPIC_INSIGHT_REQUESTED, event, "retry shortly")
    return InsightRequestAccepted(
        request_id=event.request_id, message_id=message_id, conversation_id=conversation_id
    )


class ConversationPatch(BaseModel):
    """A change of status, assignee, or both; a field left out is left as it is."""

    model_config = ConfigDict(extra="forbid")

    status: ConversationStatus | None = Field(
        default=None, description="`open`, `pending` or `resolved`"
    )
    assignee: AuthorId | None = Field(
        default=None, description="A configured operator's username, or null to unassign"
    )

    @model_validator(mode="after")
    def _something_changes(self) -> "ConversationPatch":
        if not self.model_fields_set:
            raise ValueError("give `status`, `assignee` or both")
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("`status` must be open, pending or resolved, not null")
        return self


@router.patch(
    "/{conversation_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "Unknown conversation"},
        422: {"description": "Empty body, unknown status or assignee"},
        503: {"description": "Bus down"},
    },
)
async def change_conversation(
    conversation_id: UUID,
    body: ConversationPatch,
    operator: CurrentOperator,
    sidecar: SidecarDep,
    settings: SettingsDep,
) -> ChangeAccepted:
    """Change the status (``open``, ``pending``, ``resolved``) or the assignee (a configured
    operator, or null). Accepted for delivery: the read model shows the change once messaging
    has stored it. Resolving also starts an AI summary of the whole conversation, in the
    background."""
    assignee_set = "assignee" in body.model_fields_set
    if assignee_set and body.assignee is not None and body.assignee not in settings.accounts:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"assignee: {body.assignee!r} is not an operator",
        )
    await read_conversation(sidecar, conversation_id)
    event = ConversationChanged(
        request_id=uuid4(),
        conversation_id=conversation_id,
        status=body.status,
        assignee_set=assignee_set,
        assignee=body.assignee if assignee_set else None,
        changed_by=operator.username,
        changed_at=datetime.now(UTC),
    )
    await publish(sidecar, TOPIC_CONVERSATION_CHANGED, event, "retry shortly")
    return ChangeAccepted(request_id=event.request_id, conversation_id=conversation_id)


class SeenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The conversation version the page has shown")


@router.post(
    "/{conversation_id}/seen",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "Unknown conversation"},
        422: {"description": "A version the conversation does not have yet"},
        503: {"description": "State store down or too contended"},
    },
)
async def mark_seen(
    conversation_id: UUID,
    body: SeenRequest,
    operator: CurrentOperator,
    sidecar: SidecarDep,
    seen_store: SeenDep,
) -> Response:
    """Record that the calling operator has seen the conversation at ``version``, for every
    browser and gateway replica: it is no longer ``unread`` until its version moves on. A
    lower version than one recorded changes nothing. 422 for a version above the
    conversation's current one."""
    conversation = await read_conversation(sidecar, conversation_id)
    if body.version > conversation.version:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"version: {body.version} is newer than the conversation's ({conversation.version})",
        )
    await seen_store.mark(operator.username, str(conversation_id), body.version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
