"""The engine process: a backend built and run in a spawned child, answers in order, failures kept apart."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from service.engine.engine_process import EngineProcess, EngineProcessDied
from service.engine.types import Batch, EncodedConversation
from tests.support.engine_fakes import (
    EXIT,
    RAISE,
    RAISE_UNPICKLABLE,
    SLOW,
    build_broken_backend,
    build_token_backend,
)


def batch(*firsts: int) -> Batch:
    conversations = [EncodedConversation((first, 7, 7), gate_index=0, prefix_len=0) for first in firsts]
    return Batch(conversations, ())


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineProcess]:
    process = EngineProcess(build_token_backend, start_timeout_s=120)
    yield process
    process.close()


def test_runs_batches_in_a_child_and_reports_what_it_runs(engine: EngineProcess) -> None:
    rows = engine.run(batch(3, 5, 8))
    assert rows.score.tolist() == [3.0, 5.0, 8.0]
    assert rows.rewards[:, 1].tolist() == [-3.0, -5.0, -8.0]
    assert rows.computed_tokens == engine.pid != os.getpid()  # the fake reports the pid that computed it
    assert (engine.name, engine.packed, engine.forward) == ("token", True, "fake forward")
    assert engine.attention_kernel is None


def test_times_are_the_forward_only_not_the_wait_behind_another_batch(engine: EngineProcess) -> None:
    """Two threads send at once: the second waits ~0.3 s behind the first, but its own forward is short."""
    results: dict[str, tuple[float, float, float]] = {}

    def call(name: str, *firsts: int) -> None:
        sent = time.perf_counter()
        _, started, finished = engine.run_timed(batch(*firsts))
        results[name] = (sent, started, finished)

    slow = threading.Thread(target=call, args=("slow", SLOW, 1))
    slow.start()
    time.sleep(0.05)
    call("quick", 2)
    slow.join()
    quick_sent, quick_started, quick_finished = results["quick"]
    assert results["slow"][2] - results["slow"][1] >= 0.25
    assert quick_started >= results["slow"][2]  # one forward at a time, in the order sent
    assert quick_finished - quick_started < 0.2 < quick_finished - quick_sent


def test_concurrent_callers_each_get_their_own_rows(engine: EngineProcess) -> None:
    answers: dict[int, list[float]] = {}

    def call(first: int) -> None:
        answers[first] = engine.run(batch(first, first + 1)).score.tolist()

    threads = [threading.Thread(target=call, args=(10 * n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {10 * n: [10.0 * n, 10.0 * n + 1] for n in range(1, 9)}


def test_a_failing_batch_raises_its_own_error_and_the_next_batch_runs(engine: EngineProcess) -> None:
    with pytest.raises(ValueError, match="bad batch of 2"):
        engine.run(batch(RAISE, 4))
    with pytest.raises(RuntimeError, match="UnpicklableError: holds a lock"):
        engine.run(batch(RAISE_UNPICKLABLE))
    assert engine.run(batch(6)).score.tolist() == [6.0]
    assert engine.alive


def test_a_build_failure_is_raised_by_the_constructor() -> None:
    with pytest.raises(FileNotFoundError, match="pass --model DIR"):
        EngineProcess(build_broken_backend, start_timeout_s=120)


def test_a_dead_engine_fails_the_batch_in_flight_and_every_later_one() -> None:
    engine = EngineProcess(build_token_backend, start_timeout_s=120)
    try:
        with pytest.raises(EngineProcessDied, match="exited with code 3"):
            engine.run(batch(EXIT))
        assert not engine.alive
        with pytest.raises(EngineProcessDied, match="restarted"):
            engine.run(batch(1))
    finally:
        engine.close()


def test_the_engine_ignores_sigterm_and_stops_on_close() -> None:
    """SIGTERM goes to the service, which drains first: the engine must still be there to finish the work."""
    engine = EngineProcess(build_token_backend, start_timeout_s=120)
    assert engine.pid is not None
    os.kill(engine.pid, signal.SIGTERM)
    time.sleep(0.2)
    assert engine.run(batch(9)).score.tolist() == [9.0]
    engine.close()
    assert not engine.alive
