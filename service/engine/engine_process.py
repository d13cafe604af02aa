"""The scoring backend in a child process of its own, so the model's Python has its own interpreter lock.

Why: the forward's op dispatch is Python, and in one process it shares the interpreter lock with the
event loop (HTTP, JSON, validation, tokenisation, 429s); vLLM splits its API server from its engine core
for the same reason. The batcher, its queue and admission stay in the service process; only
`ScoringBackend.run` crosses over: a planned `Batch` (token ids) goes down a pipe, `ScoreRows` come back.
Batches are planned as late as before (one model thread in the service calls `run` and waits).

When it pays (2-core Intel Xeon with AMX-BF16; README "Reliability" and issue 15 sections): a forward that
is mostly dispatch (the tests' tiny model) served 1589-1749 items/s over HTTP (median 1600) against
1259-1408 (median 1312) in one process, where half a core had stood idle while the model thread waited
for the lock. A forward that is mostly GEMMs (the bench model, bf16) gained nothing on 2 cores: its two
OpenMP threads then compete with the front end for the cores, where in one process the lock had kept the
front end waiting; 4 rotated rounds read 0.98x for 32 x 1, 0.90x for 4 x 64, 0.97x for GRPO. So it is
opt-in (`--engine-process`).

The child is spawned (never forked: torch's thread pools do not survive a fork), builds the backend with
the same `build` function the service would have called, and then serves one batch at a time. It ignores
SIGINT and SIGTERM (the service drains, then closes it) and dies with the service (`PR_SET_PDEATHSIG`,
or end of file on its pipe). If it dies, every later `run` raises `EngineProcessDied`.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from service.engine.types import Batch, ScoreRows, ScoringBackend, Timed
from service.gc_freeze import freeze_startup_heap
from service.malloc import glibc

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class EngineProcessDied(RuntimeError):
    """The engine process is gone; nothing more can be scored until the service restarts."""


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What the service reads from the backend it runs (the model card's forward and attention lines)."""

    name: str
    packed: bool
    forward: str | None
    attention_kernel: str | None


@dataclass(frozen=True, slots=True)
class _Failed:
    """A `run` that raised in the child: the exception when it pickles, else its type and message."""

    error: BaseException | None
    description: str


def _die_with_parent() -> None:
    libc = glibc()
    if libc is not None:
        try:
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except AttributeError:
            pass  # not Linux: end of file on the pipe still stops the loop below


def _engine_main(conn: Connection, build: Callable[[], ScoringBackend]) -> None:
    """The child: build the backend, report what it is, then run batches until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        backend = build()
    except BaseException as error:  # noqa: BLE001 - every start-up failure goes back to the service
        conn.send(_failure(error))
        return
    freeze_startup_heap()  # this process only runs batches from here on: see service.gc_freeze
    conn.send(BackendInfo(backend.name, backend.packed, getattr(backend, "forward", None),
                          getattr(backend, "attention_kernel", None)))
    while True:
        try:
            batch = conn.recv()
        except EOFError:
            return
        if batch is None:
            return
        started = time.perf_counter()
        try:
            answer: Timed | _Failed = (backend.run(batch), started, time.perf_counter())
        except Exception as error:  # noqa: BLE001 - a failed batch fails only its own requests
            answer = _failure(error)
        conn.send(answer)


def _failure(error: BaseException) -> _Failed:
    description = f"{type(error).__name__}: {error}"
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - an exception that cannot cross the pipe is sent as its description
        return _Failed(None, description)
    return _Failed(error, description)


class EngineProcess:
    """A `ScoringBackend` whose `run` happens in a child process (see the module docstring).

    `build` must pickle (a module-level function or a `functools.partial` of one): it is sent to the child.
    Construction blocks until the child has built its backend, and raises what building raised. One batch
    is in the pipe at a time: a second caller waits for the first one's answer.
    """

    def __init__(self, build: Callable[[], ScoringBackend], *, start_timeout_s: float = 3600.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_engine_main, args=(child_end, build), name="paretorm-engine", daemon=True
        )
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()  # a send and its answer go together
        self._died: EngineProcessDied | None = None
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise EngineProcessDied(f"the engine process did not start within {start_timeout_s:.0f} s")
        info = self._first_answer()
        self.name = info.name
        self.packed = info.packed
        self.forward = info.forward
        self.attention_kernel = info.attention_kernel
        logger.info("engine process %d runs the %s backend (%s)", self._process.pid, self.name, self.forward)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return self._died is None and self._process.is_alive()

    def run(self, batch: Batch) -> ScoreRows:
        return self.run_timed(batch)[0]

    def run_timed(self, batch: Batch) -> Timed:
        """The rows, and when the child started and ended the forward (its `time.perf_counter`, which on
        Linux is CLOCK_MONOTONIC, one clock for every process): pickling and the pipe are not forward time."""
        with self._lock:
            if self._died is not None:
                raise self._died
            try:
                self._conn.send(batch)
                answer = self._conn.recv()
            except (EOFError, OSError, ValueError) as error:
                self._died = self._death()
                raise self._died from error
        if isinstance(answer, _Failed):
            raise answer.error if answer.error is not None else RuntimeError(answer.description)
        return answer  # type: ignore[no-any-return]

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the child to stop after the batch it is running, then make sure it has."""
        try:
            self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout_s)
        self._conn.close()

    def _first_answer(self) -> BackendInfo:
        try:
            info = self._conn.recv()
        except (EOFError, OSError) as error:
            self.close()
            raise self._death() from error
        if isinstance(info, _Failed):
            self.close()
            raise info.error if info.error is not None else EngineProcessDied(info.description)
        return info  # type: ignore[no-any-return]

    def _death(self) -> EngineProcessDied:
        self._process.join(1.0)
        return EngineProcessDied(
            f"the engine process (pid {self._process.pid}) exited with code {self._process.exitcode}; "
            "the service cannot score until it is restarted (its log lines above say why it stopped)"
        )
