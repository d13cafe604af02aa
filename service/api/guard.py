"""Per-request deadline and client-disconnect handling around a scoring coroutine.

The deadline comes from the `X-Request-Deadline-Ms` header (a budget in milliseconds from arrival). When
it expires, or when the client hangs up first, the scoring task is cancelled: the batcher then drops the
request's conversations that have not reached the model, and nobody else's work is affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from service.errors import ClientGone, DeadlineExceeded, InvalidRequest

T = TypeVar("T")

DEADLINE_HEADER = "x-request-deadline-ms"
_POLL_S = 0.05


def deadline_seconds(request: Request) -> float | None:
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"header X-Request-Deadline-Ms must be a number of milliseconds, got {raw!r}") from None
    if not value > 0:
        raise InvalidRequest(f"header X-Request-Deadline-Ms must be positive, got {raw!r}")
    return value / 1000


async def _wait_for_disconnect(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(_POLL_S)


async def guarded(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it on deadline expiry (504) or client disconnect (dropped)."""
    timeout = deadline_seconds(request)
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        if watcher in done:
            raise ClientGone("the client disconnected before its scores were ready")
        raise DeadlineExceeded(
            f"the request's deadline of {timeout * 1000:.0f} ms (X-Request-Deadline-Ms) expired before its scores "
            "were ready; its queued work was dropped. Raise the deadline or send fewer items per request"
        )
    finally:
        watcher.cancel()
