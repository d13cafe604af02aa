"""The FastAPI application factory.

`create_app(settings)` builds the app; its lifespan loads the model (off the event loop), warms it up,
then serves; on shutdown it drains the batcher. Tests and benchmarks may pass a prebuilt `Runtime`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api import health, objectives_routes, scoring_routes
from service.api.admission import Admission, AdmissionMiddleware
from service.api.body_limit import BodyLimitMiddleware
from service.api.errors import install_error_handlers
from service.api.instrumentation import InstrumentationMiddleware
from service.engine.batcher import model_thread_executor
from service.runtime import Runtime, load_runtime, start_runtime
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

ENGINE_WATCH_S = 0.5

DESCRIPTION = """
Multi-objective reward model serving. `POST /v1/score` returns, for every conversation, the
per-objective rewards, the prompt's gate weights, the effective coefficients and the gated score
(ArmoRM), plus optional fixed-weight or DPA-direction aggregates and CGPO calibrated rewards.
`POST /get_reward` speaks OpenRLHF's remote reward protocol. Errors always come as
`{"error": {"type", "message"}}`.
"""


async def watch_engine(app: FastAPI, runtime: Runtime) -> None:
    """Stop the service, exiting 1, once its engine process has died: nothing can be scored until a
    supervisor (Kubernetes, Docker's restart policy, systemd) starts it again, and an exit tells it to."""
    while runtime.engine_alive:
        await asyncio.sleep(ENGINE_WATCH_S)
    if runtime.draining:
        return  # the drain closed it
    logger.error("the engine process died; stopping the service so that its supervisor restarts it")
    app.state.load_error = RuntimeError("the engine process died")
    app.state.on_fatal()


def create_app(settings: ServiceSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime is not None else ServiceSettings())

    async def bring_up(app: FastAPI) -> None:
        try:
            if runtime is not None:
                active = runtime
            else:
                model_thread = model_thread_executor()
                active = await asyncio.get_running_loop().run_in_executor(
                    model_thread, load_runtime, settings, model_thread
                )
            await start_runtime(active)
            app.state.on_ready()
        except Exception as error:
            logger.error("the model could not be loaded: %s", error, exc_info=not isinstance(error, ValueError))
            app.state.load_error = error
            app.state.on_fatal()
            return
        app.state.runtime = active
        if active.engine_alive is not None:
            await watch_engine(app, active)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: /health/live answers at once, /health/ready turns 200 after warm-up.
        loading = asyncio.get_running_loop().create_task(bring_up(app), name="paretorm-load")
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            if app.state.runtime is not None:
                await app.state.runtime.drain_and_close()

    app = FastAPI(title="paretorm", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.api_keys = settings.api_key_list()
    app.state.runtime = None
    app.state.load_error = None
    app.state.on_fatal = lambda: None  # the server replaces this with "stop the process"
    app.state.on_ready = lambda: None  # the server replaces this with "freeze the start-up heap"
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(scoring_routes.router)
    app.include_router(objectives_routes.router)
    app.state.admission = Admission(limit=settings.concurrent_request_limit)
    # Starlette runs the last added outermost: body limit, instrumentation (drain stamp), admission, routes.
    app.add_middleware(AdmissionMiddleware, admission=app.state.admission)
    app.add_middleware(InstrumentationMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
