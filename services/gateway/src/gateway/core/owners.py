"""Which customer a conversation belongs to, so the channel API can refuse, synchronously, a
continuation from anyone else (409) before it says "accepted".

The gateway cannot ask PostgreSQL (only Dapr between services), so it keeps its own claim in
the Dapr state store: one key per conversation, ``gateway:owner:{conversation_id}``, holding
``{"customer_id": ...}``, written once with Dapr's first-write-wins concurrency (no ETag: the
write succeeds only while the key is absent), so of two customers racing to open the same
conversation id exactly one wins. A conversation opened before claims existed has no key: its
customer is taken from the conversation read model messaging projects, and claimed then.
Messaging refuses a foreign customer's message in its storing transaction as well, so an
event that gets past this check (another publisher, a lost state store) is never stored.
"""

import json
from uuid import UUID

from inbox_common.errors import TransientError
from inbox_common.keys import conversation_key, owner_key
from inbox_common.read_models import Conversation
from inbox_common.sidecar import Sidecar

MAX_ATTEMPTS = 3
"""Claim attempts: a lost race is settled by reading the winner's claim on the next one."""


class NotTheOwner(Exception):
    """The conversation belongs to another customer."""


async def claim(sidecar: Sidecar, conversation_id: UUID | str, customer_id: str) -> None:
    """Make sure ``conversation_id`` belongs to ``customer_id``: it does when the stored claim
    (or, without one, the conversation read model) names that customer, or when nobody has
    claimed it yet, in which case the claim is written now.

    Raises:
        NotTheOwner: another customer holds the conversation.
        TransientError: the state store did not answer, or kept refusing the claim without
            showing who holds it.
    """
    key = owner_key(conversation_id)
    for _ in range(MAX_ATTEMPTS):
        raw, etag = await sidecar.get_state_and_etag(key)
        claimed = _customer(raw)
        owner = claimed or await _read_model_customer(sidecar, conversation_id)
        if owner is not None and owner != customer_id:
            raise NotTheOwner(f"conversation {conversation_id} belongs to another customer")
        if claimed is not None:
            return
        # Unclaimed (or an unreadable claim, replaced under its ETag): claim it. A refusal
        # means another request claimed it first; the next round reads who.
        value = json.dumps({"customer_id": customer_id})
        if await sidecar.try_save_state(key, value, etag):
            return
    raise TransientError(f"{key}: the claim was refused {MAX_ATTEMPTS} times, retry shortly")


def _customer(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("customer_id") if isinstance(value, dict) else None


async def _read_model_customer(sidecar: Sidecar, conversation_id: UUID | str) -> str | None:
    raw = await sidecar.get_state(conversation_key(conversation_id))
    return Conversation.model_validate_json(raw).customer_id if raw else None
