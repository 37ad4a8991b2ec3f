"""ai-worker service: LLM enrichment behind Dapr.

Served by ``uvicorn --factory ai_worker.main:create_app``.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from inbox_common import knowledge, metrics
from inbox_common.errors import TransientError
from inbox_common.sidecar import Sidecar
from inbox_common.subscriptions import AppTokenMiddleware, sidecar_app
from inbox_common.telemetry import instrument_app, setup_telemetry

from ai_worker import subscriptions
from ai_worker.analysis import Analyser
from ai_worker.intents import load_examples
from ai_worker.learning import IntentStep
from ai_worker.settings import Settings, get_settings
from ai_worker.summary import Summariser

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app, the intent step trained first when ``AI_INTENT_EXAMPLES`` names its
    examples; the sidecar client starts in its lifespan.

    Raises:
        OSError, ValueError: the examples file cannot be read or holds a line that is not a
            labelled example; the worker does not start without the step it was given.
    """
    settings = settings or get_settings()
    knowledge.use_directory(settings.knowledge_dir)
    setup_telemetry("ai-worker", settings.log_level)
    sidecar = Sidecar()
    seed = load_examples(settings.ai_intent_examples) if settings.ai_intent_examples else []
    intent_step = IntentStep(seed)
    analyser = Analyser(settings, intent_step=intent_step)
    summariser = Summariser(settings, analyser.slots)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with metrics.serve(settings.metrics_port, settings.metrics_host):
            async with sidecar:
                try:
                    await intent_step.learn(sidecar)  # the corrections made so far
                except TransientError as exc:
                    log.warning("intent step: corrections not read yet", extra={"reason": str(exc)})
                yield

    app = FastAPI(title="Support Inbox ai-worker", lifespan=lifespan)
    app.add_middleware(AppTokenMiddleware, token=settings.app_api_token)
    subscriptions.register(
        sidecar_app(app),
        sidecar,
        analyser,
        settings.insight_cache_ttl_s,
        settings.ai_stream_interval_ms,
        summariser,
        intent_step,
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    metrics.instrument_http(app)
    instrument_app(app)
    return app
