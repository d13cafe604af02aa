"""How many torch threads each CPU forward runs on: all of them or one fewer, whichever ran faster lately.

Why not a fixed count: on a shared host the forward's cores are also another process's. An OpenMP team as
wide as the machine then waits at every barrier for the member the scheduler preempted. On a 2-core AMD
EPYC (AVX2, fp32), the tiny test model's 64 x 40-token batch: quiet, 2 threads ran 1.1-1.3x faster than
one; beside a process busy 60 % of a core one thread ran 1.7x faster, beside a whole busy core 1.4-1.6x.
The bench model's GEMM-bound 8 x 336-token forward kept 2 threads as the faster in every probe, quiet or
not. Contention comes and goes, so the width is measured while serving (`--thread-tuning`, off by default:
figures in the README, "Issue 11 ... eleventh session").

How: the forward runs at the current width and its time per token is kept; every `interval` forwards
(8, doubling up to 64 while the other width keeps losing) or at once when the current width's time per
token moves by more than a fifth, `PROBE_FORWARDS` forwards run at the other width. The width whose
recent median time per token is lower by more than `MARGIN` is kept. Forwards under `min_tokens` are too
short to tell (fixed costs dominate them) and run at the current width, unrecorded.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

__all__ = ["ThreadWidthTuner"]

_Result = TypeVar("_Result")

logger = logging.getLogger(__name__)

PROBE_FORWARDS = 2
WINDOW = 4  # recent forwards per width whose median is compared
MARGIN = 0.05  # the other width must be this much faster per token to be kept
SHIFT = 0.2  # the current width's time per token moved this much: measure the other at once
FIRST_INTERVAL, LAST_INTERVAL = 8, 64


class ThreadWidthTuner:
    """Chooses, per forward, between `threads` and `threads - 1` torch threads (see the module docstring).

    Called on the model thread only: OpenMP's thread count is a setting of the calling thread.
    `set_threads` and `clock` are torch's and `time.perf_counter` outside tests.
    """

    def __init__(
        self,
        threads: int,
        *,
        min_tokens: int = 256,
        set_threads: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if threads < 2:
            raise ValueError(f"thread tuning needs at least 2 threads to choose between, got {threads}")
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        self._set_threads = set_threads
        self._clock = clock
        self._min_tokens = min_tokens
        self.widths = (threads, threads - 1)
        self._current, self._other = self.widths
        self._applied: int | None = None
        self._recent: dict[int, deque[float]] = {width: deque(maxlen=WINDOW) for width in self.widths}
        self._reference: float | None = None  # the current width's median when it was last chosen
        self._interval = FIRST_INTERVAL
        self._since_probe = 0
        self._probe_left = 0
        self.forwards: dict[int, int] = dict.fromkeys(self.widths, 0)  # forwards run at each width

    @property
    def width(self) -> int:
        """The width forwards run at now, between probes."""
        return self._current

    def at_each_width(self, work: Callable[[], None]) -> None:
        """`work()` once at each width, then the current one again: compiled code is guarded on torch's thread
        count, so `torch.compile` ahead of traffic must see both."""
        try:
            for width in self.widths:
                self._set_threads(width)
                work()
        finally:  # a failed compile (the caller may go on eagerly) leaves the current width set, too
            self._set_threads(self._current)
            self._applied = self._current

    def run(self, tokens: int, forward: Callable[[], _Result]) -> _Result:
        """`forward()` at the width chosen for a batch of `tokens`, timed and recorded."""
        width = self._other if self._probe_left and tokens >= self._min_tokens else self._current
        if width != self._applied:
            self._set_threads(width)
            self._applied = width
        started = self._clock()
        result = forward()
        self.forwards[width] += 1
        if tokens >= self._min_tokens:
            self._record(width, (self._clock() - started) / tokens)
        return result

    def _record(self, width: int, seconds_per_token: float) -> None:
        self._recent[width].append(seconds_per_token)
        if width == self._other:
            self._probe_left -= 1
            if self._probe_left == 0:
                self._decide()
            return
        self._since_probe += 1
        if self._since_probe >= self._interval or self._shifted():
            self._probe_left, self._since_probe = PROBE_FORWARDS, 0

    def _shifted(self) -> bool:
        recent = self._recent[self._current]
        if self._reference is None or len(recent) < WINDOW:
            return False
        return abs(statistics.median(recent) / self._reference - 1) > SHIFT

    def _decide(self) -> None:
        other = statistics.median(list(self._recent[self._other])[-PROBE_FORWARDS:])
        current = statistics.median(self._recent[self._current])
        logger.debug("thread widths: %d at %.3g us per token, %d at %.3g", self._current, current * 1e6,
                     self._other, other * 1e6)  # fmt: skip
        if other < current * (1 - MARGIN):
            self._current, self._other = self._other, self._current
            self._interval, self._reference = FIRST_INTERVAL, other
            fresh = list(self._recent[self._current])[-PROBE_FORWARDS:]  # older ones predate the change
            self._recent[self._current] = deque(fresh, maxlen=WINDOW)
        else:
            self._interval, self._reference = min(2 * self._interval, LAST_INTERVAL), current
