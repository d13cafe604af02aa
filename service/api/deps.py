"""Typed dependencies: the runtime built at start-up, and the auth check.

Both are `async def` although they never await: FastAPI runs a plain `def` dependency on its thread
pool, two thread hand-offs per request that showed up in profiles of the event loop under load.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.auth import check_bearer
from service.errors import NotReady
from service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise NotReady("the model is still loading; retry shortly (see /health/ready)")
    if runtime.draining and request.scope.get("state", {}).get("paretorm_late"):
        raise NotReady("the service is draining for shutdown; retry on another replica", retry_after_s=1)
    return runtime


async def authorized(request: Request) -> None:
    check_bearer(request, request.app.state.api_keys)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AUTH = [Depends(authorized)]
