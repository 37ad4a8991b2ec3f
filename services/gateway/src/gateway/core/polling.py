"""Waiting for a key in the Dapr state store: how the gateway gets an answer to a query it
published (a search) without calling another service."""

import asyncio
import time

from inbox_common.sidecar import Sidecar

FIRST_INTERVAL_S = 0.025
"""First wait between two reads, in seconds; each next one is 1.5 times longer..."""
MAX_INTERVAL_S = 0.1
"""...up to this, in seconds."""


async def wait_for_state(
    sidecar: Sidecar,
    key: str,
    timeout_s: float,
    first_interval_s: float = FIRST_INTERVAL_S,
    max_interval_s: float = MAX_INTERVAL_S,
) -> bytes | None:
    """Read ``key`` until it exists, waiting 25 ms, then 37.5 ms, ... up to 100 ms between
    reads, for at most ``timeout_s`` seconds.

    Returns:
        The value, or ``None`` when the key did not appear in time.

    Raises:
        TransientError: the sidecar or state store did not answer.
    """
    deadline = time.monotonic() + timeout_s
    interval = first_interval_s
    while True:
        value = await sidecar.get_state(key)
        if value is not None:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(interval, left))
        interval = min(interval * 1.5, max_interval_s)
