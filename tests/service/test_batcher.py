"""The batcher with a fake backend: cross-request batching, drops, failures, back-pressure, drain."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.engine.batcher import Batcher
from service.engine.types import Batch, EncodedConversation, ScoreRows
from service.errors import NotReady, Overloaded


class FakeBackend:
    """Scores a conversation as its first token id; records every batch; can block or fail on demand."""

    name = "fake"
    packed = False

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.plans: list[Batch] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: int | None = None

    def run(self, batch: Batch) -> ScoreRows:
        self.gate.wait(10)
        self.plans.append(batch)
        firsts = [conversation.input_ids[0] for conversation in batch.conversations]
        self.batches.append(firsts)
        if self.fail_on is not None and self.fail_on in firsts:
            raise RuntimeError("boom")
        values = np.array(firsts, dtype=np.float64)
        rewards = np.stack([values, -values], axis=1)
        return ScoreRows(rewards, np.ones_like(rewards), np.ones_like(rewards), values, computed_tokens=len(batch))


def conv(first: int, length: int = 4) -> EncodedConversation:
    return EncodedConversation(tuple([first] + [0] * (length - 1)), gate_index=0, prefix_len=0)


def make(backend: FakeBackend, **overrides: float) -> Batcher:
    options = {"max_batch_tokens": 1000, "max_batch_items": 64, "max_queue_tokens": 1000, "batch_wait_ms": 5.0,
               "share_prompts": False}
    options.update(overrides)
    return Batcher(backend, **options)  # type: ignore[arg-type]


def test_requests_from_many_clients_share_batches_and_keep_their_order() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        batcher = make(backend)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([conv(10 * r + i) for i in range(3)]) for r in range(1, 9)))
        for r, result in enumerate(results, start=1):
            assert [row.score for row in result.rows] == [10 * r + i for i in range(3)]
            assert result.compute_ms >= 0 and result.queue_ms >= 0
        assert len(backend.batches) < 8  # requests were merged
        await batcher.close()

    asyncio.run(scenario())


def test_abandoned_requests_are_dropped_before_the_model() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.gate.clear()
        batcher = make(backend, max_batch_items=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([conv(1)]))
        await asyncio.sleep(0.05)  # conv 1 is now inside the (blocked) model
        doomed = asyncio.ensure_future(batcher.submit([conv(2), conv(3)]))
        await asyncio.sleep(0.02)
        doomed.cancel()
        survivor = asyncio.ensure_future(batcher.submit([conv(4)]))
        await asyncio.sleep(0.02)
        backend.gate.set()
        assert [row.score for row in (await first).rows] == [1]
        assert [row.score for row in (await survivor).rows] == [4]
        assert backend.batches == [[1], [4]]
        assert batcher.queued_items == 0 and batcher.queued_tokens == 0
        await batcher.close()

    asyncio.run(scenario())


def test_a_whole_next_batch_is_handed_over_while_the_model_runs_and_needs_no_event_loop_turn() -> None:
    """Found by the 10x burst: the model idled between forwards while a busy loop answered 429s."""

    async def scenario() -> None:
        backend = FakeBackend()
        backend.gate.clear()
        batcher = make(backend, max_batch_items=2, batch_wait_ms=0.0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([conv(1), conv(2)]))
        await asyncio.sleep(0.05)  # batch [1, 2] is inside the (blocked) model
        partial = asyncio.ensure_future(batcher.submit([conv(3)]))
        await asyncio.sleep(0.02)
        assert batcher.queued_items == 1  # part-filled: it waits, as it may still grow
        grown = asyncio.ensure_future(batcher.submit([conv(4), conv(5)]))
        await asyncio.sleep(0.02)
        assert batcher.queued_items == 3  # a whole batch is handed over, to be planned by the model thread
        backend.gate.set()
        time.sleep(0.3)  # the event loop is blocked: only the model thread can move
        assert backend.batches == [[1, 2], [3, 4]]
        results = await asyncio.gather(first, partial, grown)
        assert [[row.score for row in result.rows] for result in results] == [[1, 2], [3], [4, 5]]
        assert backend.batches == [[1, 2], [3, 4], [5]] and batcher.idle
        await batcher.close()

    asyncio.run(scenario())


def test_the_next_batch_is_planned_when_the_model_gets_to_it_smallest_request_first() -> None:
    """A one-item request that arrives behind a big request, after the next batch was handed over, still
    rides in that batch: planned late, by the model thread; after the oldest item, smallest request first."""

    async def scenario() -> None:
        backend = FakeBackend()
        backend.packed = True  # the smallest-first order is the packed backend's
        backend.gate.clear()
        batcher = make(backend, max_batch_items=2, batch_wait_ms=0.0)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit([conv(1), conv(2)]))
        await asyncio.sleep(0.05)  # batch [1, 2] is inside the (blocked) model
        big = asyncio.ensure_future(batcher.submit([conv(10 + i) for i in range(6)]))
        await asyncio.sleep(0.02)  # a whole next batch is handed over
        small = asyncio.ensure_future(batcher.submit([conv(99)]))
        await asyncio.sleep(0.02)
        backend.gate.set()
        assert [row.score for row in (await small).rows] == [99]
        assert [row.score for row in (await big).rows] == [10 + i for i in range(6)]
        await running
        assert backend.batches == [[1, 2], [10, 99], [11, 12], [13, 14], [15]]
        await batcher.close()

    asyncio.run(scenario())


def test_a_failing_batch_fails_only_its_requests() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.fail_on = 7
        batcher = make(backend, max_batch_items=1)
        batcher.start()
        bad, good = await asyncio.gather(batcher.submit([conv(7)]), batcher.submit([conv(8)]), return_exceptions=True)
        assert isinstance(bad, RuntimeError)
        assert [row.score for row in good.rows] == [8]  # type: ignore[union-attr]
        assert [row.score for row in (await batcher.submit([conv(9)])).rows] == [9]
        await batcher.close()

    asyncio.run(scenario())


def test_full_queue_is_refused_and_draining_refuses_new_work() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        backend.gate.clear()
        batcher = make(backend, max_queue_tokens=8, max_batch_items=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit([conv(1)]))
        await asyncio.sleep(0.05)
        handed = asyncio.ensure_future(batcher.submit([conv(2)]))  # handed over, next after the running one
        await asyncio.sleep(0.01)
        assert batcher.queued_tokens == 4  # not yet planned (the model thread plans it): it still counts
        queued = asyncio.ensure_future(batcher.submit([conv(3)]))  # 8 tokens: the queue is full
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit([conv(5)])
        assert refused.value.headers is not None and "Retry-After" in refused.value.headers
        drain = asyncio.ensure_future(batcher.drain(timeout_s=10))
        await asyncio.sleep(0.01)
        with pytest.raises(NotReady):
            await batcher.submit([conv(6)])
        backend.gate.set()
        assert await drain is True
        assert [row.score for row in (await queued).rows] == [3]
        assert [row.score for row in (await handed).rows] == [2]
        assert [row.score for row in (await running).rows] == [1]
        await batcher.close()

    asyncio.run(scenario())


def test_the_backend_gets_the_planned_units_with_members_numbered_in_the_batch() -> None:
    """Plan once: the batcher hands over the planner's units, renumbered to batch positions, in arrival order."""
    prompt = (7, 7, 7, 7)

    async def scenario() -> None:
        backend = FakeBackend()
        batcher = make(backend, share_prompts=True)
        batcher.start()
        group = [EncodedConversation((i, *prompt, i, i), gate_index=0, prefix_len=0) for i in (1, 2)]
        shared = [EncodedConversation((*prompt, 100 + i), gate_index=0, prefix_len=4) for i in range(3)]
        await asyncio.gather(batcher.submit(group), batcher.submit(shared))
        await batcher.close()
        plan = backend.plans[-1]
        assert [c.input_ids[0] for c in plan.conversations] == backend.batches[-1]
        members = sorted(m for unit in plan.units for m in unit.members)
        assert members == list(range(len(plan.conversations)))
        groups = [unit for unit in plan.units if unit.shared]
        assert len(groups) == 1 and [plan.conversations[m].input_ids[-1] for m in groups[0].members] == [100, 101, 102]
        assert [unit.oldest for unit in plan.units] == sorted(unit.oldest for unit in plan.units)

    asyncio.run(scenario())


def test_the_batcher_imports_no_torch() -> None:
    """The queue knows `Batch` and the `ScoringBackend` protocol (engine/types.py), never the torch backend."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import service.engine.batcher, service.engine.planning, service.engine.types\n"
        "assert 'torch' not in sys.modules, 'the batcher pulled in torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
