"""CGPO judges run in a child process under a time budget, never on the event loop.

Judges are regular expressions and parsers over text a client sends: a user pattern such as `(a+)+$`,
or the built-in sentence counter over 20 000 `!` followed by a letter (4.6 s in Python's `re`, quadratic),
can run for hours. Python's `re` holds the GIL while it matches, so a thread would not help: every
request and the health probes would stall, and Kubernetes would restart the pod. `JudgeWorker` sends each
request's judging to one long-lived child process and waits at most `budget_s`; past it the child is
killed (the only way to stop a running match), the request gets a 422 that says why, and the next
request starts a fresh child. Requests take turns on the child, so a hostile one delays others by at
most the budget.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from service.errors import InvalidRequest, ServiceError

__all__ = ["JudgeJob", "JudgeWorker", "ItemVerdicts"]

logger = logging.getLogger(__name__)

_READY = "ready"
_START_TIMEOUT_S = 60.0

JudgeJob = tuple[str, str, list[dict[str, Any]], dict[str, float] | None, int | None]
"""(prompt text, response, judge specs, model rewards or None, response token count)."""


@dataclass(frozen=True, slots=True)
class ItemVerdicts:
    """One item's verdicts as (name, passed, reason), or its spec error (a 422), or a judge's crash."""

    results: tuple[tuple[str, bool, str], ...] = ()
    error: str | None = None
    crash: str | None = None  # a judge raised something other than a spec error: a bug, answered as a 500


class JudgeWorker:
    """Owns the judging child process: start, one request at a time under the budget, kill, restart."""

    def __init__(self, budget_s: float = 5.0) -> None:
        self.budget_s = budget_s
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._turn = asyncio.Lock()

    def start(self) -> None:
        """Spawn the child (about 0.3 s: a fresh interpreter importing the judges) unless it is running."""
        if self._process is not None and self._process.is_alive():
            return
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), name="paretorm-judges", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        # The child says when its imports are done, so the budget only ever times judging.
        if not parent.poll(_START_TIMEOUT_S) or parent.recv() != _READY:
            self.close()
            raise ServiceError(f"the judge worker did not start within {_START_TIMEOUT_S:g} s")

    async def evaluate(self, jobs: Sequence[JudgeJob]) -> list[ItemVerdicts]:
        """Judge every item in the child; InvalidRequest when over budget (the child is then replaced)."""
        if not jobs:
            return []
        async with self._turn:
            await asyncio.to_thread(self.start)
            try:
                return await asyncio.to_thread(self._round_trip, list(jobs))
            except asyncio.CancelledError:
                self.close()  # the answer may still be on its way; a fresh child keeps answers in order
                raise
            except TimeoutError:
                logger.warning("judging went over its %g s budget; the judge worker is replaced", self.budget_s)
                self.close()
                raise InvalidRequest(
                    f"judging took longer than its budget of {self.budget_s:g} s (PARETORM_JUDGE_TIMEOUT_S) "
                    "and was stopped: a regex with catastrophic backtracking (e.g. `(a+)+$`) or very long "
                    "responses; simplify the pattern, shorten the responses or split the request"
                ) from None
            except (EOFError, OSError) as error:
                self.close()
                raise ServiceError(f"the judge worker died ({type(error).__name__}); it is restarted") from None

    def _round_trip(self, jobs: list[JudgeJob]) -> list[ItemVerdicts]:
        assert self._conn is not None
        self._conn.send(jobs)
        if not self._conn.poll(self.budget_s):
            raise TimeoutError
        answer: list[ItemVerdicts] = self._conn.recv()
        return answer

    def close(self) -> None:
        """Kill the child (a match in progress cannot be interrupted any other way)."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            process.kill()
            process.join(timeout=5)


def _serve(conn: Connection) -> None:
    """The child's loop: judge each list of jobs it receives until the pipe closes."""
    from service.objectives.judges import default_registry

    registry = default_registry()
    conn.send(_READY)
    while True:
        try:
            jobs = conn.recv()
        except EOFError:
            return
        conn.send([_judge_one(job, registry) for job in jobs])


def _judge_one(job: JudgeJob, registry: Any) -> ItemVerdicts:
    from service.objectives.judges import JudgeContext, evaluate_judges
    from service.objectives.validation import ObjectiveInputError

    prompt, response, specs, rewards, token_count = job
    try:
        report = evaluate_judges(prompt, response, specs, JudgeContext(rewards, token_count), registry)
    except ObjectiveInputError as error:
        return ItemVerdicts(error=str(error))
    except Exception as error:  # a judge bug: answer it as such and keep the worker alive
        return ItemVerdicts(crash=f"{type(error).__name__}: {error}"[:300])
    return ItemVerdicts(results=tuple((r.name, r.passed, r.reason) for r in report.results))
