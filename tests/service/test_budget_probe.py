"""The start-up budget probe: the budget it chooses for a given cost curve, and what it feeds the model.

The fake backend reports forward times from a cost curve (`run_timed`, as an engine process does) instead of
sleeping, so every case is exact and instant. The probe on the real tiny model, inside a started service,
is in `test_budget_probe_serve.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from service.engine.batcher import Batcher
from service.engine.budget_probe import ITEM_TOKENS, choose, ladder, probe_batch_tokens
from service.engine.planning import whole_batch
from service.engine.types import Batch, EncodedConversation, ScoreRows, Timed

SAMPLE = EncodedConversation(tuple(range(100, 130)), gate_index=20, prefix_len=25)
LONG = EncodedConversation(tuple(range(ITEM_TOKENS)), gate_index=20, prefix_len=0)


class CurveBackend:
    """Runs on a virtual clock: a forward of `tokens` needs `work(tokens)` seconds of the machine, and takes
    `slowdown` times longer while a burst of other processes' work is on (`bursts(now)` says whether one is).
    Records every batch."""

    name = "curve"
    packed = True

    def __init__(
        self,
        work: Callable[[int], float],
        bursts: Callable[[float], bool] = lambda now: False,
        slowdown: float = 3,
    ) -> None:
        self.work, self.bursts, self.slowdown = work, bursts, slowdown
        self.now = 0.0
        self.batches: list[Batch] = []

    def run_timed(self, batch: Batch) -> Timed:
        self.batches.append(batch)
        tokens = sum(conversation.num_tokens for conversation in batch.conversations)
        started, left, step = self.now, self.work(tokens), 1e-4
        while left > 0:
            left -= step / (self.slowdown if self.bursts(self.now) else 1)
            self.now += step
        ones = np.ones((len(batch), 2))
        return ScoreRows(ones, ones, ones, np.ones(len(batch))), started, self.now

    def run(self, batch: Batch) -> ScoreRows:
        return self.run_timed(batch)[0]


def per_token(costs_us: dict[int, float]) -> Callable[[int], float]:
    """A forward's seconds from microseconds per token at each batch size (exact sizes only)."""
    return lambda tokens: tokens * costs_us[tokens] * 1e-6


def probe(
    backend: CurveBackend, max_batch_tokens: int = 16384, max_batch_items: int = 64, **options: float
) -> int:
    return probe_batch_tokens(
        backend, SAMPLE, max_batch_tokens=max_batch_tokens, max_batch_items=max_batch_items, **options
    ).chosen  # type: ignore[arg-type]


def test_the_ladder_doubles_from_2048_and_ends_at_the_ceiling() -> None:
    assert ladder(16384) == [2048, 4096, 8192, 16384]
    assert ladder(6000) == [2048, 4096, 6000]
    assert ladder(300) == [300]


def test_the_smallest_budget_within_the_tolerance_of_the_cheapest_is_chosen() -> None:
    costs = {512: 40.0, 1024: 30.0, 2048: 23.5, 4096: 22.0, 8192: 21.5, 16384: 21.4}
    assert choose(costs, 0.1) == 2048  # 23.5 <= 1.1 x 21.4
    assert choose(costs, 0.05) == 4096
    assert probe(CurveBackend(per_token(costs))) == 2048


def test_a_cost_that_still_falls_at_the_top_keeps_the_operators_ceiling() -> None:
    costs = {512: 40.0, 1024: 30.0, 2048: 20.0, 4096: 12.0, 8192: 7.0, 16384: 4.0}  # a GPU's curve
    assert probe(CurveBackend(per_token(costs))) == 16384


def test_the_item_cap_ends_the_ladder_and_a_cheapest_top_keeps_the_ceiling() -> None:
    backend = CurveBackend(lambda tokens: tokens * 1e-6 * (40 if tokens < 2048 else 20))
    assert (
        probe(backend, max_batch_items=8) == 16384
    )  # 8 x 256 tokens is the most a batch of such items holds
    assert max(sum(c.num_tokens for c in batch.conversations) for batch in backend.batches) == 8 * ITEM_TOKENS


def test_a_slow_model_stops_the_climb_and_never_gets_the_untried_ceiling() -> None:
    backend = CurveBackend(lambda tokens: tokens * 1e-3)  # 2 s for 2048 tokens: an 8B model on 2 CPU cores
    assert probe(backend) == 2048
    assert {sum(c.num_tokens for c in batch.conversations) for batch in backend.batches} == {2048}
    assert len(backend.batches) == 4  # the uncounted pass and three counted ones, one forward each


KNEE = {512: 40.0, 1024: 30.0, 2048: 25.0, 4096: 22.0, 8192: 21.5, 16384: 21.4}  # us per token; knee at 4096


def test_a_slow_spell_during_one_pass_does_not_move_the_choice() -> None:
    def spell() -> CurveBackend:
        backend = CurveBackend(per_token(KNEE))
        # Forwards 1-4 warm the ladder; 5-12 are the first counted pass's smallest budget (8 forwards of 16384
        # tokens in all), 13-16 its 4096-token budget: the host is 3x slower for those.
        backend.bursts = lambda now: 13 <= len(backend.batches) <= 16
        return backend

    assert probe(CurveBackend(per_token(KNEE))) == 4096
    assert probe(spell()) == 4096
    assert probe(spell(), passes=1) == 8192  # what a single counted pass would have chosen


def test_bursts_of_other_work_bias_no_budget_because_each_is_timed_over_the_same_work() -> None:
    def bursty() -> CurveBackend:  # other processes busy 50 ms of every 100 ms (servers starting beside it)
        return CurveBackend(per_token(KNEE), bursts=lambda now: now % 0.1 >= 0.05)

    assert probe(bursty()) == 4096
    # Timed one forward each, the smallest budget's forwards (51 ms) could start just as a burst ended and
    # lose only 1 ms to the next, while the larger ones always met bursts, so the smallest looked cheapest:
    backend, least = bursty(), {}
    for _ in range(4):
        for budget in ladder(16384):
            _, started, finished = backend.run_timed(whole_batch([LONG] * (budget // ITEM_TOKENS), False))
            least[budget] = min(least.get(budget, 1.0), (finished - started) / budget)
    assert choose(least, 0.1) == 2048


def test_the_probe_feeds_random_unshared_conversations_drawn_from_the_sample() -> None:
    backend = CurveBackend(lambda tokens: tokens * 1e-6)
    probe(backend, max_batch_tokens=2048)
    seen = [conversation for batch in backend.batches for conversation in batch.conversations]
    assert all(conversation.num_tokens == ITEM_TOKENS for conversation in seen)
    assert all(set(conversation.input_ids) <= set(SAMPLE.input_ids) for conversation in seen)
    assert all(
        conversation.prefix_len == 0 and conversation.gate_index == ITEM_TOKENS // 2 for conversation in seen
    )
    assert len({conversation.input_ids[:16] for conversation in seen}) == len(
        seen
    )  # no prompt to share or cache
    ungated = CurveBackend(lambda tokens: tokens * 1e-6)
    probe_batch_tokens(
        ungated,
        EncodedConversation((5, 6, 7), gate_index=-1, prefix_len=0),
        max_batch_tokens=512,
        max_batch_items=64,
    )
    assert all(c.gate_index == -1 for batch in ungated.batches for c in batch.conversations)


def test_the_batcher_plans_at_the_chosen_budget_and_refuses_one_above_its_ceiling() -> None:
    async def scenario() -> None:
        backend = CurveBackend(lambda tokens: 0.0)
        batcher = Batcher(
            backend,
            max_batch_tokens=64,
            max_batch_items=64,
            max_queue_tokens=1000,  # type: ignore[arg-type]
            batch_wait_ms=5.0,
            share_prompts=False,
        )
        with pytest.raises(ValueError, match="max_batch_tokens"):
            batcher.plan_at(65)
        batcher.plan_at(16)
        assert batcher.batch_tokens == 16
        batcher.start()
        await batcher.submit(
            [EncodedConversation((1, 2, 3, 4), gate_index=0, prefix_len=0) for _ in range(12)]
        )
        assert [len(batch) for batch in backend.batches] == [4, 4, 4]
        await batcher.close()

    asyncio.run(scenario())


def test_a_forward_that_fails_in_the_probe_names_its_size_and_the_knob() -> None:
    def work(tokens: int) -> float:
        if tokens > 4096:
            raise MemoryError("CUDA out of memory")
        return tokens * 1e-6

    with pytest.raises(
        RuntimeError, match=r"8192 tokens failed .*CUDA out of memory.*PARETORM_MAX_BATCH_TOKENS"
    ):
        probe(CurveBackend(work))
