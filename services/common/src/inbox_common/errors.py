"""The two error types every service uses to tell Dapr (and kopf) what to do next.

A subscription handler raises :class:`TransientError` when trying again later may succeed (the
database is down, the sidecar is restarting): the adapter answers ``RETRY`` and Dapr's resiliency
policy redelivers. It raises :class:`PoisonError` when the input itself is wrong and no retry can
help: the adapter answers ``DROP`` and Dapr moves the event to the subscription's dead-letter topic.
Source: https://docs.dapr.io/reference/api/pubsub_api/#expected-http-response
"""


class TransientError(Exception):
    """A failure that may succeed on retry (maps to Dapr ``RETRY``, kopf ``TemporaryError``)."""


class PoisonError(Exception):
    """Input that can never be processed (maps to Dapr ``DROP``, kopf ``PermanentError``)."""
