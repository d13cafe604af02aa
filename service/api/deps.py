"""Typed dependencies: the runtime built at start-up, and the auth check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.auth import check_bearer
from service.errors import NotReady
from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        raise NotReady("the model is still loading; retry shortly (see /health/ready)")
    return runtime


def authorized(request: Request) -> None:
    check_bearer(request, request.app.state.api_keys)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AUTH = [Depends(authorized)]
