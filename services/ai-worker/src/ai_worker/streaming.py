"""The suggested reply as the model writes it: ``insight.delta`` events, batched in time.

The model writes one JSON object (``INSIGHT_SCHEMA``); the reply is read from the partial JSON
with pydantic-core's partial parser (``allow_partial="trailing-strings"``), so a half-written
string value is read as far as it goes.
"""

import logging
import time
from uuid import UUID

from inbox_common.errors import TransientError
from inbox_common.events import TOPIC_INSIGHT_DELTA, InsightDelta
from inbox_common.sidecar import Sidecar
from pydantic_core import from_json

from ai_worker.assistant import customer_safe_prefix

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 2000


def partial_reply(text: str) -> str:
    """The ``suggested_reply`` value in the model's JSON so far; ``""`` before it starts or
    when the text is not (yet) a JSON object (a fenced or prose answer shows nothing)."""
    start = text.find("{")
    if start < 0:
        return ""
    try:
        value = from_json(text[start:], allow_partial="trailing-strings")
    except ValueError:
        return ""
    reply = value.get("suggested_reply") if isinstance(value, dict) else None
    return reply[:MAX_REPLY_CHARS] if isinstance(reply, str) else ""


class ReplyStream:
    """Publishes the partial reply of one analysis at most every ``interval_ms`` ms.

    Feed it the model's whole output so far with :meth:`update`. Events are best effort: a
    publish that fails is logged and skipped, since the final ``ai.completed`` insight
    replaces whatever was shown. ``events`` counts what was published; ``first_at`` is the
    ``time.monotonic()`` of the first.
    """

    def __init__(
        self,
        sidecar: Sidecar,
        message_id: UUID,
        conversation_id: UUID,
        revision: int,
        interval_ms: int,
    ) -> None:
        self._sidecar = sidecar
        self._ids = {"message_id": message_id, "conversation_id": conversation_id}
        self._revision = revision
        self._interval_s = interval_ms / 1000
        self._shown = ""
        self._last_at: float | None = None
        self.events = 0
        self.first_at: float | None = None
        self.to_customer = False
        """Set when the AI assistant writes this reply to the customer (see InsightDelta):
        then only its complete sentences are published, and only while they may be shown to
        the customer (:func:`ai_worker.assistant.customer_safe_prefix`); once they may not,
        the rest goes to operators only."""

    async def update(self, output: str) -> None:
        """Publish the reply in ``output`` if it grew and the interval has passed. The first
        interval starts with the model's first output: a model that answers within it gets
        no draft, its finished insight follows at once (one event per message, not two)."""
        now = time.monotonic()
        if self._last_at is None:
            self._last_at = now
        if now - self._last_at < self._interval_s:
            return
        reply = partial_reply(output)
        if self.to_customer:
            safe = customer_safe_prefix(reply)
            if safe is None:
                self.to_customer = False  # the rest of the draft goes to operators only
            else:
                reply = safe
        if not reply.strip() or reply == self._shown:
            return
        self._last_at = now
        self._shown = reply
        delta = InsightDelta(
            **self._ids,
            revision=self._revision,
            seq=self.events + 1,
            text=reply,
            to_customer=self.to_customer,
        )
        try:
            await self._sidecar.publish(TOPIC_INSIGHT_DELTA, delta)
        except TransientError as exc:
            log.info("partial reply not published", extra={"reason": str(exc)[:200]})
            return
        self.events += 1
        if self.first_at is None:
            self.first_at = now
