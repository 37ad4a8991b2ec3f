"""Messaging service: the system of record behind Dapr.

Run with ``uvicorn messaging.main:app`` after ``python -m messaging.prestart``.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from inbox_common import knowledge, metrics
from inbox_common.sidecar import Sidecar
from inbox_common.subscriptions import AppTokenMiddleware, sidecar_app
from inbox_common.telemetry import instrument_app, setup_telemetry
from psycopg_pool import AsyncConnectionPool

from messaging import subscriptions
from messaging.outbox import OutboxRelay
from messaging.redelivery import InsightWatchdog
from messaging.retention import OutboxPruner
from messaging.runtime import Runtime
from messaging.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the pool, sidecar client, outbox relay, insight watchdog and outbox
    pruner start in its lifespan.

    Served by ``uvicorn --factory messaging.main:create_app``.
    """
    settings = settings or get_settings()
    knowledge.use_directory(settings.knowledge_dir)
    setup_telemetry("messaging", settings.log_level)
    pool = AsyncConnectionPool(
        settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        kwargs={"autocommit": True},
        timeout=settings.db_connect_timeout_s,
        open=False,
    )
    sidecar = Sidecar()
    relay = OutboxRelay(
        pool,
        sidecar,
        settings.outbox_batch_size,
        settings.outbox_poll_interval_s,
        settings.inbox_interval_s,
    )
    watchdog = InsightWatchdog(
        pool,
        relay,
        interval_s=settings.insight_redelivery_interval_s,
        after_s=settings.insight_redeliver_after_s,
        max_redeliveries=settings.insight_max_redeliveries,
        batch_size=settings.insight_redelivery_batch_size,
    )
    pruner = OutboxPruner(pool, settings.outbox_retention_s, settings.outbox_prune_interval_s)
    runtime = Runtime(settings, pool, sidecar, relay)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with metrics.serve(settings.metrics_port, settings.metrics_host):
            await pool.open(wait=True, timeout=settings.db_connect_timeout_s)
            async with pool, sidecar:
                tasks = [
                    asyncio.create_task(relay.run(), name="outbox-relay"),
                    asyncio.create_task(watchdog.run(), name="insight-watchdog"),
                    asyncio.create_task(pruner.run(), name="outbox-pruner"),
                ]
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(title="Support Inbox messaging", lifespan=lifespan)
    app.add_middleware(AppTokenMiddleware, token=settings.app_api_token)
    subscriptions.register(
        sidecar_app(app),
        runtime,
        (runtime.settings.bulk_max_messages, runtime.settings.bulk_max_await_ms),
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        try:
            async with runtime.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "database unavailable", "reason": str(exc)}, 503)
        return JSONResponse({"status": "ok"})

    metrics.instrument_http(app)
    instrument_app(app)
    return app
