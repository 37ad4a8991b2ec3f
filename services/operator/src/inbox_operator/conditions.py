"""Kubernetes-style status conditions (https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties)."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

TYPES = ("Ready", "BrokerReady", "DatabaseReady", "ModelReady")


@dataclass(frozen=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


def merge(
    previous: list[dict] | None,
    current: list[Condition],
    generation: int,
    now: datetime | None = None,
) -> list[dict]:
    """The new ``status.conditions``: ``lastTransitionTime`` moves only when ``status`` does.

    Args:
        previous: the conditions now stored on the object (may be ``None``).
        current: this reconcile's findings, one per type.
        generation: ``metadata.generation`` they were computed for.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for condition in current:
        old = before.get(condition.type, {})
        changed = old.get("status") != condition.status
        merged.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": stamp if changed else old.get("lastTransitionTime", stamp),
                "observedGeneration": generation,
            }
        )
    return merged
