"""What the messaging app holds while it runs."""

from dataclasses import dataclass

from inbox_common.sidecar import Sidecar
from psycopg_pool import AsyncConnectionPool

from messaging.outbox import OutboxRelay
from messaging.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    pool: AsyncConnectionPool
    sidecar: Sidecar
    relay: OutboxRelay
