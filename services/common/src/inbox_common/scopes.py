"""Who publishes and who subscribes each topic: the one table Dapr's pub/sub scopes come from.

Dapr refuses a publish (HTTP 403, ``ERR_PUBSUB_FORBIDDEN``) or a subscription outside an app's
``publishingScopes`` / ``subscriptionScopes``, and ``protectedTopics`` makes every topic
deny-by-default for an app-id the scopes do not list
(https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-scopes/).
The component YAML in ``dapr-components/pubsub/`` and the operator's rendered components carry
the strings :func:`component_scopes` makes; ``python -m devstack.scopes`` writes them there and
``tests/test_pubsub_scopes.py`` fails when they are stale or when a service's code publishes or
subscribes outside this table.
"""

from inbox_common.events import (
    BROADCAST_PUBSUB,
    BROADCAST_TOPICS,
    DEAD_LETTER_SUFFIX,
    PUBSUB,
    TOPIC_AI_COMPLETED,
    TOPIC_ANALYSIS_REQUESTED,
    TOPIC_CONVERSATION_CHANGED,
    TOPIC_CONVERSATION_UPDATED,
    TOPIC_INBOX_PAGE_REQUESTED,
    TOPIC_INSIGHT_DELTA,
    TOPIC_INSIGHT_REQUESTED,
    TOPIC_INTENT_CORRECTED,
    TOPIC_INTENT_EXAMPLES_CHANGED,
    TOPIC_MESSAGE_CREATED,
    TOPIC_MESSAGES_SUBMITTED,
    TOPIC_SEARCH_REQUESTED,
    TOPIC_SUMMARY_COMPLETED,
    TOPIC_SUMMARY_REQUESTED,
    TOPICS,
    dead_letter_topic,
    pubsub_for,
)

APPS = ("gateway", "messaging", "ai-worker")
"""Every Dapr app-id of the inbox."""

PUBLISHES: dict[str, frozenset[str]] = {
    "gateway": frozenset(
        {
            TOPIC_MESSAGES_SUBMITTED,
            TOPIC_INSIGHT_REQUESTED,
            TOPIC_CONVERSATION_CHANGED,
            TOPIC_SEARCH_REQUESTED,
            TOPIC_INBOX_PAGE_REQUESTED,
            TOPIC_INTENT_CORRECTED,
        }
    ),
    "messaging": frozenset(  # through its outbox
        {
            TOPIC_MESSAGE_CREATED,
            TOPIC_CONVERSATION_UPDATED,
            TOPIC_ANALYSIS_REQUESTED,
            TOPIC_SUMMARY_REQUESTED,
            TOPIC_INTENT_EXAMPLES_CHANGED,
        }
    ),
    "ai-worker": frozenset({TOPIC_AI_COMPLETED, TOPIC_SUMMARY_COMPLETED, TOPIC_INSIGHT_DELTA}),
}
"""app-id -> the topics its code publishes."""

SUBSCRIBES: dict[str, frozenset[str]] = {
    "gateway": frozenset({TOPIC_CONVERSATION_UPDATED, TOPIC_INSIGHT_DELTA}),
    "messaging": frozenset(
        {
            TOPIC_MESSAGES_SUBMITTED,
            TOPIC_AI_COMPLETED,
            TOPIC_INSIGHT_REQUESTED,
            TOPIC_CONVERSATION_CHANGED,
            TOPIC_SUMMARY_COMPLETED,
            TOPIC_SEARCH_REQUESTED,
            TOPIC_INBOX_PAGE_REQUESTED,
            TOPIC_INTENT_CORRECTED,
        }
    ),
    "ai-worker": frozenset(
        {
            TOPIC_MESSAGE_CREATED,
            TOPIC_ANALYSIS_REQUESTED,
            TOPIC_SUMMARY_REQUESTED,
            TOPIC_INTENT_EXAMPLES_CHANGED,
        }
    ),
}
"""app-id -> the topics it subscribes to (each with a dead-letter topic)."""

READS_DEAD_LETTERS: dict[str, frozenset[str]] = {
    "messaging": frozenset(TOPICS) - BROADCAST_TOPICS,
}
"""app-id -> the topics whose dead-letter topic it subscribes to (messaging keeps every work
topic's dead letters in its ``dead_letters`` table)."""


def may_publish(app: str) -> frozenset[str]:
    """Topics ``app``'s sidecar may publish: its own, plus the dead-letter topic of each topic
    it subscribes to, because the subscriber's sidecar forwards a dropped event there."""
    return PUBLISHES[app] | {dead_letter_topic(t) for t in SUBSCRIBES[app]}


def may_subscribe(app: str) -> frozenset[str]:
    """Topics ``app``'s sidecar may subscribe to."""
    return SUBSCRIBES[app] | {dead_letter_topic(t) for t in READS_DEAD_LETTERS.get(app, ())}


def _on(component: str, topics: frozenset[str]) -> list[str]:
    return sorted(t for t in topics if pubsub_for(t.removesuffix(DEAD_LETTER_SUFFIX)) == component)


def component_scopes(component: str) -> dict[str, str]:
    """Scope metadata of one pub/sub component (:data:`PUBSUB` or :data:`BROADCAST_PUBSUB`).

    Returns:
        ``{"publishingScopes": ..., "subscriptionScopes": ..., "protectedTopics": ...}``, each
        in Dapr's syntax (``"app1=t1,t2;app2=;..."``; an app with nothing on this component
        is listed with an empty list, which Dapr reads as "no topic"). Sorted, so the same
        table always gives the same strings.

    Raises:
        ValueError: ``component`` is neither pub/sub component.
    """
    if component not in (PUBSUB, BROADCAST_PUBSUB):
        raise ValueError(f"not a pub/sub component of the inbox: {component!r}")
    every = frozenset(TOPICS) | {dead_letter_topic(t) for t in TOPICS}

    def scope(allowed: dict[str, frozenset[str]]) -> str:
        return ";".join(f"{app}={','.join(_on(component, allowed[app]))}" for app in APPS)

    return {
        "publishingScopes": scope({app: may_publish(app) for app in APPS}),
        "subscriptionScopes": scope({app: may_subscribe(app) for app in APPS}),
        "protectedTopics": ",".join(_on(component, every)),
    }
