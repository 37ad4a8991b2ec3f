"""Every key of the ``inbox-state`` state store, named in one place.

The store is shared by the apps, so its key space is a contract like the topics: messaging
writes the read models the gateway reads; the gateway keeps its own edge state beside them.

| key | written by | read by | TTL |
|---|---|---|---|
| ``conversation:{id}`` | messaging | gateway | none |
| ``inbox:index`` | messaging | gateway | none |
| ``intent-examples`` | messaging | ai-worker | none |
| ``search:{request_id}``, ``inbox-page:{request_id}`` | messaging | gateway | 60 s |
| ``gateway:owner:{conversation_id}`` | gateway, on the first message | gateway | none |
| ``operator:{username}:seen`` | gateway | gateway | none |
| ``gateway:ratelimit:{limit key}`` | gateway | gateway | the window |
| ``gateway:renew:{family}`` | gateway, on the first renewal | gateway | the session |
| ``gateway:widget:user:{customer_id}`` | gateway, on the first session | gateway | none |
"""

from uuid import UUID

INBOX_KEY = "inbox:index"
"""The inbox list read model (summaries, newest activity first)."""
INTENT_EXAMPLES_KEY = "intent-examples"
"""The operators' labelled examples (:class:`inbox_common.read_models.IntentExamples`)."""
RATE_LIMIT_PREFIX = "gateway:ratelimit:"
"""Prefix of the rate-limit windows; the ``limits`` library names the rest."""


def conversation_key(conversation_id: UUID | str) -> str:
    """One conversation's read model."""
    return f"conversation:{conversation_id}"


def search_key(request_id: UUID | str) -> str:
    """One search's result (``SearchRequested``)."""
    return f"search:{request_id}"


def inbox_page_key(request_id: UUID | str) -> str:
    """One page of the inbox read past the list (``InboxPageRequested``)."""
    return f"inbox-page:{request_id}"


def owner_key(conversation_id: UUID | str) -> str:
    """The customer a conversation belongs to."""
    return f"gateway:owner:{conversation_id}"


def seen_key(username: str) -> str:
    """One operator's seen versions (unread marks)."""
    return f"operator:{username}:seen"


def renew_key(family: str) -> str:
    """A widget session's renew-token chain."""
    return f"gateway:renew:{family}"


def user_conversation_key(customer_id: str) -> str:
    """The conversation of a user the embedding site signed in."""
    return f"gateway:widget:user:{customer_id}"
