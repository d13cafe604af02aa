"""Liveness, readiness and Prometheus metrics: open routes, no auth, no model work."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/health/ready", summary="Model loaded, warmed up, and not draining", responses={503: {}})
async def ready(request: Request) -> JSONResponse:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None or not runtime.ready:
        return error_response(503, "unavailable", "the model is loading or warming up", {"Retry-After": "1"})
    if runtime.draining:
        return error_response(503, "unavailable", "the service is draining for shutdown", {"Retry-After": "1"})
    return JSONResponse({"status": "ready", "model": runtime.card.name, "revision": runtime.card.revision})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
