"""Runs the app under uvicorn with a graceful drain on SIGTERM.

On the first SIGTERM (or Ctrl-C) readiness turns 503 and new scoring requests are refused with 503 (so a
load balancer and the paretorm client move to another replica), while every accepted request finishes:
one whose headers arrived before the signal, even if its body is still being read or tokenised. Only then
does uvicorn stop and the process exit 0. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import FrameType

import uvicorn

from service.app import create_app
from service.gc_freeze import freeze_startup_heap
from service.settings import ServiceSettings

logger = logging.getLogger("paretorm")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app_state: object, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._app_state = app_state
        self._drain_timeout_s = drain_timeout_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = getattr(self._app_state, "runtime", None)
        if self._draining or runtime is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        runtime.draining = True
        logger.info("signal %s: draining (readiness is now 503), then exiting", sig)
        asyncio.get_event_loop().create_task(self._drain_then_exit(runtime))

    async def _drain_then_exit(self, runtime: object) -> None:
        deadline = time.monotonic() + self._drain_timeout_s
        # Requests that arrived before the signal are accepted, even those still being read or tokenised
        # (not yet in the batcher's queue): wait until each has sent its response, then close the batcher.
        while runtime.inflight > 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        await runtime.batcher.drain(max(0.0, deadline - time.monotonic()))  # type: ignore[attr-defined]
        self.should_exit = True


def _freeze_startup_heap() -> None:
    started = time.perf_counter()
    frozen = freeze_startup_heap()
    logger.info("froze %d start-up objects out of the garbage collector's walks in %.2f s", frozen,
                time.perf_counter() - started)


def serve(settings: ServiceSettings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # server_header=False: no `server: uvicorn` on every answer (it names the stack to a scanner, for nothing).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)), server_header=False)
    server = DrainingServer(config, app.state, settings.drain_timeout_s)
    app.state.on_fatal = lambda: setattr(server, "should_exit", True)
    app.state.on_ready = _freeze_startup_heap
    server.run()
    return 1 if app.state.load_error is not None else 0
