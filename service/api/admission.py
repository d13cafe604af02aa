"""ASGI middleware refusing scoring requests with a 429 before their body is read, when there is enough work.

Found by the 10x burst (issue 11): the queue's 429 was decided in `Batcher.submit`, after the body had been
read, JSON-decoded, validated and tokenised, so at 10x capacity the 2 cores went to parsing and tokenising
requests the service then refused or let time out (answers 200: 12, 429: 605, 504: 3333 in 10 s on the
2-core AMD EPYC) and the model starved. Here a scoring request is refused from its headers alone when

- `limit` scoring requests are already in flight (arrival to answer; `PARETORM_MAX_CONCURRENT_REQUESTS`), or
- the batcher's queue has no room for this request and those admitted, read and not yet queued (being
  parsed and tokenised), taking each to be of the size lately typical (`Batcher.has_room`), or
- its `X-Request-Deadline-Ms` is shorter than the time the queued work needs at the recent forward rate.

The refusal is the batcher's own `Overloaded` (429, `Retry-After`) rendered by `service.api.errors`, the one
envelope. Requests the app must answer itself pass through uncounted: anything before the model is ready
(503 loading) and late arrivals during a drain (503 draining, stamped by `InstrumentationMiddleware`, which
therefore sits outside this one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.api.errors import error_response
from service.api.guard import DEADLINE_HEADER
from service.errors import Overloaded

if TYPE_CHECKING:
    from service.engine.batcher import Batcher

SCORING_PATHS = frozenset({"/v1/score", "/get_reward", "/v1/judge"})
"""The routes whose work reaches the batcher (or the judge worker); health, metrics and PAMA stay open."""

_DEADLINE = DEADLINE_HEADER.encode()


@dataclass
class Admission:
    """The in-flight count on the scoring routes and its limit; `app.state.admission`.

    `read_unanswered`: those whose body has fully arrived and whose answer has not started: the ones being
    parsed, tokenised, queued or computed. A request still receiving its body is not among them, so slow
    senders (slowloris) cannot make the queue look full to everyone else.
    """

    limit: int
    in_flight: int = 0
    read_unanswered: int = 0


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in SCORING_PATHS:
            await self.app(scope, receive, send)
            return
        runtime = getattr(scope["app"].state, "runtime", None) if scope.get("app") else None
        if runtime is None or not runtime.ready or scope.get("state", {}).get("paretorm_late"):
            await self.app(scope, receive, send)  # the app answers 503 (loading or draining)
            return
        refusal = self._refusal(scope, runtime.batcher)
        if refusal is not None:
            metrics.REJECTED.labels(reason=refusal[0]).inc()
            scope.setdefault("state", {})["paretorm_route"] = scope["path"]  # the metrics' route label
            error = refusal[1]
            answer = error_response(error.status_code, error.error_type, error.message, error.headers)
            await answer(scope, receive, send)
            return
        await self._admitted(scope, receive, send)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission = self.admission
        read = answered = False

        async def tracking_receive() -> Message:
            nonlocal read
            message = await receive()
            if not read and message["type"] == "http.request" and not message.get("more_body", False):
                read = True
                admission.read_unanswered += not answered
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal answered
            if not answered and message["type"] == "http.response.start":
                answered = True
                admission.read_unanswered -= read
            await send(message)

        admission.in_flight += 1
        try:
            await self.app(scope, tracking_receive, tracking_send)
        finally:
            admission.in_flight -= 1
            if read and not answered:
                admission.read_unanswered -= 1

    def _refusal(self, scope: Scope, batcher: Batcher) -> tuple[str, Overloaded] | None:
        retry = batcher.retry_after_s()
        if self.admission.in_flight >= self.admission.limit:
            return "concurrency", Overloaded(
                f"{self.admission.in_flight} scoring requests are in flight, the limit "
                "(PARETORM_MAX_CONCURRENT_REQUESTS); retry after the Retry-After delay", retry_after_s=retry)
        # Admitted requests read but not yet in the queue (being parsed, tokenised) will need room too:
        # without them in the sum, each time the queue had room hundreds were admitted, tokenised and then
        # refused.
        unqueued = max(0, self.admission.read_unanswered - batcher.submitted_requests)
        if not batcher.has_room(arriving=unqueued + 1):
            return "queue_full_early", Overloaded(
                f"the queue is full ({batcher.queued_tokens} tokens waiting, limit "
                f"{batcher.max_queue_tokens}; requests lately average "
                f"{batcher.typical_request_tokens:.0f} tokens, {unqueued} more are being parsed); retry "
                "after the Retry-After delay or send smaller requests", retry_after_s=retry)
        deadline_s = _deadline_s(scope)
        wait_s = batcher.expected_wait_s
        if deadline_s is not None and wait_s > deadline_s:
            return "deadline", Overloaded(
                f"the queued work needs about {wait_s * 1000:.0f} ms, longer than this request's deadline of "
                f"{deadline_s * 1000:.0f} ms (X-Request-Deadline-Ms); retry after the Retry-After delay",
                retry_after_s=retry)
        return None


def _deadline_s(scope: Scope) -> float | None:
    """The deadline header in seconds, or None when absent or malformed (the route then answers the 422)."""
    for name, value in scope.get("headers", ()):
        if name == _DEADLINE:
            try:
                seconds = float(value) / 1000
            except ValueError:
                return None
            return seconds if seconds > 0 else None
    return None
