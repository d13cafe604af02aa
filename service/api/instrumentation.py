"""ASGI middleware counting requests by route and status, in-flight requests and total latency.

It is also where a request's arrival is stamped for the SIGTERM drain: a request whose headers reached
the app before the drain began is *accepted* (counted in `runtime.inflight`, which the drain waits for);
one that arrived after is marked late (`scope["state"]["paretorm_late"]`) and refused with 503.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics


class InstrumentationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        runtime = getattr(scope.get("app").state, "runtime", None) if scope.get("app") else None

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        accepted = runtime is not None and not runtime.draining
        if runtime is not None and not accepted:
            scope.setdefault("state", {})["paretorm_late"] = True
        metrics.INFLIGHT.inc()
        if accepted:
            runtime.inflight += 1
        try:
            await self.app(scope, receive, recording_send)
        finally:
            metrics.INFLIGHT.dec()
            if accepted:
                runtime.inflight -= 1
            # A request refused by admission before routing names its path (scoring paths have no parameters).
            route = getattr(scope.get("route"), "path", None) or scope.get("state", {}).get("paretorm_route")
            route = route or "unmatched"
            metrics.REQUESTS.labels(route=route, status=str(status)).inc()
            if route.startswith("/v1/") or route == "/get_reward":
                metrics.STAGE_SECONDS.labels(stage="total").observe(time.perf_counter() - started)
