"""What each operator has seen, kept in the Dapr state store so that unread marks follow the
operator across browsers, tabs and gateway replicas.

One key per operator, ``operator:{username}:seen``, holds ``{conversation_id: version}``: the
newest version of each conversation the operator has been shown, oldest mark first and at
most ``SEEN_MAX_ENTRIES`` of them. A conversation is unread while its version is above the
operator's seen version (the rule the page applied on its own before). Updates are
compare-and-set with Dapr's ETags (first-write-wins,
:func:`inbox_common.sidecar.compare_and_set`), so two tabs or replicas marking at once lose no
mark.
"""

import json
import logging
from collections.abc import Iterable

from inbox_common.keys import seen_key
from inbox_common.read_models import ConversationSummary, Inbox
from inbox_common.sidecar import Sidecar, compare_and_set

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""Compare-and-set attempts per mark before giving up (other writers won every race)."""


def parse_seen(raw: bytes | str | None) -> dict[str, int]:
    """The stored ``{conversation_id: version}`` map; entries that are not one are ignored, and
    an unreadable value counts as empty (everything unread), never as an error."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def with_mark(seen: dict[str, int], conversation_id: str, version: int, bound: int) -> dict | None:
    """``seen`` with ``conversation_id`` seen at ``version`` as its newest mark, trimmed to the
    newest ``bound`` marks; ``None`` when it was seen at that version or later already."""
    if seen.get(conversation_id, 0) >= version:
        return None
    updated = {k: v for k, v in seen.items() if k != conversation_id}
    updated[conversation_id] = version
    if len(updated) > bound:
        updated = dict(list(updated.items())[len(updated) - bound :])
    return updated


def is_unread(summary: ConversationSummary, seen: dict[str, int]) -> bool:
    """Whether the conversation changed since the operator last saw it (``version`` above the
    seen version; never seen counts as 0)."""
    return summary.version > seen.get(str(summary.conversation_id), 0)


def unread_count(summaries: Iterable[ConversationSummary], seen: dict[str, int]) -> int:
    return sum(1 for s in summaries if is_unread(s, seen))


def inbox_unread_count(inbox: Inbox, seen: dict[str, int]) -> int:
    """Conversations of the whole inbox unread by the operator whose marks are ``seen``.

    Exact for the newest ``INBOX_MAX_ITEMS`` (the list's rows carry their version). Of the
    ``total - len(items)`` older ones, those never seen are unread and those seen are
    counted read: an older conversation changes rarely (any new message moves it into the
    list), and its version is not in the list to compare.
    """
    listed = {str(s.conversation_id) for s in inbox.items}
    older = inbox.total - len(inbox.items)
    older_seen = sum(1 for conversation_id in seen if conversation_id not in listed)
    return unread_count(inbox.items, seen) + max(0, older - older_seen)


class SeenStore:
    """Read and mark one operator's seen versions in ``inbox-state``.

    Raises :class:`~inbox_common.errors.TransientError` when the sidecar does not answer, and
    :class:`~inbox_common.sidecar.StateContended` when a mark lost :data:`MAX_ATTEMPTS` races
    in a row.
    """

    def __init__(self, sidecar: Sidecar, max_entries: int) -> None:
        self._sidecar = sidecar
        self._max_entries = max_entries

    async def read(self, username: str) -> dict[str, int]:
        """``{conversation_id: version}`` of everything the operator has seen."""
        return parse_seen(await self._sidecar.get_state(seen_key(username)))

    async def mark(self, username: str, conversation_id: str, version: int) -> bool:
        """Record that ``username`` has seen ``conversation_id`` at ``version``. A lower or
        equal version than the one stored changes nothing (marks never go backwards).

        Returns:
            ``True`` when the mark was written, ``False`` when it was there already.

        Raises:
            StateContended: other writers won every round (a 503 to retry).
        """
        def change(raw: bytes | None) -> tuple[str | None, bool]:
            updated = with_mark(parse_seen(raw), conversation_id, version, self._max_entries)
            return (None, False) if updated is None else (json.dumps(updated), True)

        return await compare_and_set(
            self._sidecar, seen_key(username), change, attempts=MAX_ATTEMPTS
        )
