"""Cross-request batcher: one queue for every client, one worker thread for the model.

Contract:
- `submit` enqueues a request's conversations and returns their scores in order. It refuses work at once
  (429) when the tokens waiting would exceed `max_queue_tokens`, and (503) once draining has begun.
- Batches are planned by `planning.plan_next` (token budget: `max_batch_tokens`, or the start-up probe's
  smaller choice, `plan_at`; item cap; the oldest item first, then smallest request first on a packed
  backend; shared prompts kept together). A single loop task hands the backend
  each finished `Batch` (planned once, never regrouped) on a one-thread executor, so the event loop stays
  free while the model computes and forwards never overlap.
- While a forward runs, the next batch is handed over as soon as the queue holds a whole one, so the model
  thread goes from one forward to the next without waiting for a turn of a busy event loop (at most
  `PIPELINE_DEPTH` batches handed over; a part-filled batch waits for the running one to end, as it may grow).
  Such a batch is planned by the model thread when it gets to it, not when it is handed over: a small
  request that arrives meanwhile still goes into it, instead of waiting for one more whole forward. The
  queue is therefore shared by two threads, under `_queue_lock` (held for a plan, never for a forward).
- No torch here: the backend is known only through `types.ScoringBackend`.
- A conversation whose request was abandoned (deadline passed, client gone) is dropped before it reaches
  the model; a batch that fails hands the exception to every request in it and the loop carries on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from service import metrics
from service.engine.planning import plan_next, whole_batch
from service.engine.types import (
    Batch,
    EncodedConversation,
    ScoreRow,
    ScoreRows,
    ScoringBackend,
    Timed,
    timed_forward,
)
from service.errors import NotReady, Overloaded, PayloadTooLarge

logger = logging.getLogger(__name__)
_Result = TypeVar("_Result")

PIPELINE_DEPTH = 2
"""Batches handed to the model thread at once: the running one and the next. Found by the 10x burst
(issue 11): with one, the model thread idled 12% of the time between forwards while the event loop answered
hundreds of 429s before it got round to planning the next batch (py-spy, 2-core AMD EPYC)."""


def model_thread_executor() -> ThreadPoolExecutor:
    """The one thread that runs torch for a service: loading, warm-up and every forward.

    One thread, not merely one at a time: OpenMP keeps a thread team per calling thread, and a second
    team on 2 cores made each forward ~20-40% slower (measured: 38 ms on one thread, 46-55 ms when
    loading had run on another).
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="paretorm-model")


@dataclass(slots=True)
class _Request:
    """One `submit` call: its conversations' results arrive here."""

    future: asyncio.Future[list[ScoreRow]]
    rows: list[ScoreRow | None]
    remaining: int
    queue_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def abandoned(self) -> bool:
        return self.future.done()


@dataclass(slots=True)
class _Pending:
    conversation: EncodedConversation
    request: _Request
    position: int
    enqueued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    rows: list[ScoreRow]
    queue_ms: float
    compute_ms: float


class Batcher:
    def __init__(
        self,
        backend: ScoringBackend,
        *,
        max_batch_tokens: int,
        max_batch_items: int,
        max_queue_tokens: int,
        batch_wait_ms: float,
        share_prompts: bool,
        model_thread: ThreadPoolExecutor | None = None,
    ) -> None:
        self._backend = backend
        self._batch_tokens = max_batch_tokens
        self._ceiling_tokens = max_batch_tokens
        self._max_batch_items = max_batch_items
        self._max_queue_tokens = max_queue_tokens
        self._batch_wait_s = batch_wait_ms / 1000
        self._share_prompts = share_prompts
        self._waiting: list[_Pending] = []
        self._queued_tokens = 0
        self._queue_lock = threading.Lock()  # `_waiting` and `_queued_tokens` change on two threads
        self._wakeup = asyncio.Event()
        self._executor = model_thread or model_thread_executor()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self._running = 0  # batches handed to the model thread whose results have not been delivered
        self._backlog = False  # work was waiting when the last forward ended: batch it at once, no extra wait
        self._recent_items_per_s = 0.0
        self._typical_request_tokens = 0.0
        self._submitted = 0

    @property
    def backend(self) -> ScoringBackend:
        return self._backend

    @property
    def queued_items(self) -> int:
        return len(self._waiting)

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._running

    @property
    def submitted_requests(self) -> int:
        """Requests inside `submit` now: queued, or in the forward running."""
        return self._submitted

    def has_room(self, arriving: int = 1) -> bool:
        """Whether `arriving` requests of the size lately typical would still fit the queue.

        Judged on the running mean of the tokens of requests that reached `submit`, so admission can refuse
        a burst's excess before reading, parsing and tokenising bodies that `submit` would refuse anyway.
        """
        needed = arriving * max(1.0, self._typical_request_tokens)
        return self._queued_tokens + needed <= self._max_queue_tokens

    @property
    def typical_request_tokens(self) -> float:
        return self._typical_request_tokens

    @property
    def max_queue_tokens(self) -> int:
        return self._max_queue_tokens

    @property
    def expected_wait_s(self) -> float:
        """Seconds the work queued now needs at the recent forward rate; 0 before any forward has run."""
        if self._recent_items_per_s <= 0:
            return 0.0
        return len(self._waiting) / self._recent_items_per_s

    def retry_after_s(self) -> float:
        """The Retry-After for a refusal: how long the queue needs to empty, at least a second."""
        return max(1.0, self.expected_wait_s)

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="paretorm-batcher")

    async def run_on_model_thread(self, conversations: Sequence[EncodedConversation]) -> ScoreRows:
        """Run a batch outside the queue, on the model thread (start-up warm-up only)."""
        batch = whole_batch(conversations, self._share_prompts)
        return await self.call_on_model_thread(lambda backend: backend.run(batch))

    async def call_on_model_thread(self, work: Callable[[ScoringBackend], _Result]) -> _Result:
        """`work(backend)` on the model thread, outside the queue (start-up only: warm-up, budget probe)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, self._backend)

    @property
    def batch_tokens(self) -> int:
        """The budget forwards are planned at: `max_batch_tokens`, or the start-up probe's choice below it."""
        return self._batch_tokens

    def plan_at(self, batch_tokens: int) -> None:
        """Plan forwards at `batch_tokens` from now on (`service.engine.budget_probe` measures it)."""
        if not 1 <= batch_tokens <= self._ceiling_tokens:
            raise ValueError(
                f"batch_tokens must be 1..{self._ceiling_tokens} (max_batch_tokens), got {batch_tokens}"
            )
        self._batch_tokens = batch_tokens

    async def submit(self, conversations: Sequence[EncodedConversation]) -> SubmitResult:
        if self._closing:
            raise NotReady("the service is draining for shutdown; retry on another replica", retry_after_s=1)
        if not conversations:
            return SubmitResult(rows=[], queue_ms=0.0, compute_ms=0.0)
        tokens = sum(conversation.num_tokens for conversation in conversations)
        if tokens > self._max_queue_tokens:
            raise PayloadTooLarge(
                f"the request holds {tokens} tokens, more than the whole queue ({self._max_queue_tokens}); it "
                "could never be accepted: split it into smaller requests"
            )
        self._typical_request_tokens = (
            tokens if self._typical_request_tokens == 0 else 0.9 * self._typical_request_tokens + 0.1 * tokens
        )
        if self._queued_tokens + tokens > self._max_queue_tokens:
            metrics.REJECTED.labels(reason="queue_full").inc()
            raise Overloaded(
                f"the queue is full ({self._queued_tokens} tokens waiting, limit {self._max_queue_tokens}; "
                f"this request adds {tokens}); retry after the Retry-After delay or send smaller requests",
                retry_after_s=self.retry_after_s(),
            )
        loop = asyncio.get_running_loop()
        request = _Request(future=loop.create_future(),
                           rows=[None] * len(conversations), remaining=len(conversations))
        now = time.perf_counter()
        with self._queue_lock:
            self._waiting.extend(
                _Pending(conversation, request, position, now)
                for position, conversation in enumerate(conversations)
            )
            self._queued_tokens += tokens
            self._publish_queue()
        self._wakeup.set()
        self._submitted += 1
        try:
            rows = await request.future
        finally:
            self._submitted -= 1
            if not request.future.done():
                request.future.cancel()  # deadline or disconnect: drop what has not run yet
        return SubmitResult(rows=rows, queue_ms=request.queue_seconds * 1000,
                            compute_ms=request.compute_seconds * 1000)

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking work and wait for what was accepted to finish; True when everything finished."""
        self._closing = True
        deadline = time.monotonic() + timeout_s
        while not self.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.idle

    async def close(self) -> None:
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._running >= PIPELINE_DEPTH or (self._running and not self._fills_a_batch()):
                self._wakeup.clear()  # the running batch's end (or more work) sets it again
                continue
            if self._running:
                self._hand_over(self._take_next)  # planned when the model thread gets to it
                continue
            if self._batch_wait_s and not self._backlog and not self._fills_a_batch():
                await asyncio.sleep(self._batch_wait_s)
            taken = self._take_next()
            if not taken[0]:
                self._wakeup.clear()
                continue
            self._hand_over(lambda taken=taken: taken)

    def _fills_a_batch(self) -> bool:
        return len(self._waiting) >= self._max_batch_items or self._queued_tokens >= self._batch_tokens

    def _hand_over(self, take: Callable[[], tuple[list[_Pending], Batch]]) -> None:
        """Hand the model thread a batch to `take` and run; the event loop delivers it when it lands."""
        self._running += 1
        self._backlog = False
        taken: list[_Pending] = []  # filled on the model thread before the future completes

        def take_and_run() -> Timed | None:
            batch, planned = take()
            taken.extend(batch)
            return _timed_run(self._backend, planned, batch)

        forward = asyncio.get_running_loop().run_in_executor(self._executor, take_and_run)
        forward.add_done_callback(lambda done: self._landed(taken, done))

    def _landed(self, batch: list[_Pending], forward: asyncio.Future[Timed | None]) -> None:
        self._running -= 1
        self._backlog = bool(self._waiting)
        self._wakeup.set()
        if forward.cancelled():
            error: BaseException = NotReady("the service stopped before this batch ran; retry", retry_after_s=1)
        elif forward.exception() is None:
            ran = forward.result()
            if ran is None:
                metrics.DROPPED.inc(len(batch))
            else:
                self._deliver(batch, *ran)
            return
        else:  # a failing batch fails its requests, never the loop
            error = forward.exception()  # type: ignore[assignment]
            logger.error("forward pass failed for a batch of %d conversations", len(batch), exc_info=error)
        for pending in batch:
            if not pending.request.future.done():
                pending.request.future.set_exception(error)

    def _take_next(self) -> tuple[list[_Pending], Batch]:
        """The next batch out of the queue, planned now (either thread); empty when nothing is waiting."""
        with self._queue_lock:
            self._drop_abandoned()
            if not self._waiting:
                return [], Batch((), ())
            return self._take_batch()

    def _take_batch(self) -> tuple[list[_Pending], Batch]:
        """Plan and remove the next batch; the caller holds `_queue_lock`."""
        waiting_per_request = Counter(id(pending.request) for pending in self._waiting)
        chosen, planned = plan_next(
            [pending.conversation for pending in self._waiting],
            max_batch_tokens=self._batch_tokens,
            max_batch_items=self._max_batch_items,
            share_prompts=self._share_prompts,
            packed=self._backend.packed,
            request_sizes=[waiting_per_request[id(pending.request)] for pending in self._waiting],
        )
        chosen_set = set(chosen)
        batch = [self._waiting[i] for i in chosen]
        self._waiting = [pending for i, pending in enumerate(self._waiting) if i not in chosen_set]
        self._queued_tokens -= sum(pending.conversation.num_tokens for pending in batch)
        self._publish_queue()
        return batch, planned

    def _drop_abandoned(self) -> None:
        """Forget conversations whose request was abandoned; the caller holds `_queue_lock`."""
        kept = [pending for pending in self._waiting if not pending.request.abandoned]
        if len(kept) != len(self._waiting):
            metrics.DROPPED.inc(len(self._waiting) - len(kept))
            self._waiting = kept
            self._queued_tokens = sum(pending.conversation.num_tokens for pending in kept)
            self._publish_queue()

    def _deliver(self, batch: list[_Pending], rows: ScoreRows, started: float, finished: float) -> None:
        elapsed = finished - started
        real_tokens = sum(pending.conversation.num_tokens for pending in batch)
        metrics.observe_batch(len(batch), real_tokens, rows.computed_tokens, elapsed)
        self._recent_items_per_s = 0.8 * self._recent_items_per_s + 0.2 * (len(batch) / max(elapsed, 1e-6))
        for request in {id(pending.request): pending.request for pending in batch}.values():
            request.compute_seconds += elapsed
        for index, pending in enumerate(batch):
            request = pending.request
            metrics.STAGE_SECONDS.labels(stage="queue").observe(started - pending.enqueued_at)
            if request.abandoned:
                continue
            request.rows[pending.position] = rows.take(index)
            request.queue_seconds = max(request.queue_seconds, started - pending.enqueued_at)
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result([row for row in request.rows if row is not None])

    def _publish_queue(self) -> None:
        metrics.QUEUE_ITEMS.set(len(self._waiting))
        metrics.QUEUE_TOKENS.set(self._queued_tokens)


def _timed_run(backend: ScoringBackend, planned: Batch, batch: list[_Pending]) -> Timed | None:
    """The forward and when it really ran, on the model thread; None, without a forward, when every request
    in the batch was abandoned while it waited behind the running one (a deadline passed, the client left).

    Reading `abandoned` (an asyncio future's `done()`) from this thread is a read of one field under the
    GIL; a stale answer only costs a forward whose results are then dropped.
    """
    if all(pending.request.abandoned for pending in batch):
        return None
    return timed_forward(backend, planned)
