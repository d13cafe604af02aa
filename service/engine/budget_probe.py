"""The forward budget a service plans batches at, measured at start-up on the model it serves.

Why: on a CPU the forward's cost per token stops falling at a few thousand tokens (a GEMM-bound model fills
the cores early), so a batch larger than that only makes every request in it wait longer. On the bench
model (bf16, 2-core Intel Xeon with AMX-BF16), per 336-token item: 13.6 ms alone, 8.2 ms at 4 items,
7.3 at 8 and 7.2 at 32; and planning at 4096 tokens instead of 16384 cut single items' p50 beside batch
traffic ~4.5x, throughput moving within the host's noise. On a GPU the cost per token keeps falling to
far larger batches. Where the knee lies depends on the device, the model and the CPU kind, so it is
measured, not hard-coded.

How: forwards of random-token conversations (nothing shared, nothing in any prefix cache) at budgets
doubling from `FLOOR_TOKENS` up to `max_batch_tokens`. One forward per budget warms its shape and is not
counted. Then `passes` rounds up the ladder, each budget timed over the same amount of work (as many of
its forwards as make the ladder's top budget), keeping each budget's least seconds per token. Equal work
matters on a shared host: timed one forward each, small budgets slipped between other processes' bursts of
CPU while the top budget's long forward never could; probing while four other servers started beside it
(`paretorm bench`), that version planned so small a budget that single items waited 6.8 s. The budget
chosen is the smallest whose cost per token is within `tolerance` of the cheapest. Climbing stops after a
forward longer than `forward_limit_s` (a large model on a CPU): the budgets above it are never tried, and
the probe takes at most about `passes` x budgets tried x twice that limit (the bench model in float32 on a
2-core AVX2 EPYC: a 4096-token forward took 0.8 s; with a 1 s limit the probe climbed to 8192 and took 32 s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from service.engine.planning import whole_batch
from service.engine.types import Batch, EncodedConversation, ScoringBackend, timed_forward

# Where the cost per token is flat (the AVX2 EPYC in float32: 175-205 us from 512 to 16384 tokens) the floor
# is chosen. At 512, one real 334-token chat item per forward, in-process 32 x 1 ran 9.5 items/s against
# 11.4-15.5 at 1024-8192: a forward pays the service's per-forward work, which the probe does not time. At
# 1024 a GRPO group of 8 responses to a 428-token prompt (1324 tokens) ran alone, one group per forward.
FLOOR_TOKENS = 2048
# A short chat turn: attention's share of the cost grows with length; shorter would flatter the GEMMs.
ITEM_TOKENS = 256


@dataclass(frozen=True, slots=True)
class BudgetProbe:
    chosen: int
    seconds_per_token: dict[int, float]  # budget -> least seconds per token measured (ascending budgets)

    def describe(self) -> str:
        costs = ", ".join(f"{budget}: {1e6 * cost:.1f}" for budget, cost in self.seconds_per_token.items())
        return f"{self.chosen} tokens (us per token by budget: {costs})"


def probe_batch_tokens(
    backend: ScoringBackend,
    sample: EncodedConversation,
    *,
    max_batch_tokens: int,
    max_batch_items: int,
    passes: int = 3,
    tolerance: float = 0.1,
    forward_limit_s: float = 0.5,
    seed: int = 0,
) -> BudgetProbe:
    """Measure and choose (blocking: call it on the model thread, before traffic).

    `sample`, a real encoded conversation, supplies the token ids the probe draws from (ids the model and
    its tokenizer surely know) and says whether the model reads a gate token.
    """
    rng = random.Random(seed)
    length = min(ITEM_TOKENS, max_batch_tokens)
    budgets = ladder(min(max_batch_tokens, max_batch_items * length))
    top = budgets[-1]
    for budget in list(budgets):  # warm each shape, uncounted
        if _seconds(backend, rng, sample, budget // length, length) > forward_limit_s:
            budgets = budgets[: budgets.index(budget) + 1]
            break
    work_tokens = budgets[-1]  # each budget's timed work: one forward of the largest budget tried
    least: dict[int, float] = {}
    for _ in range(passes):
        for budget in budgets:
            count = budget // length
            forwards = max(1, round(work_tokens / (count * length)))
            seconds = sum(_seconds(backend, rng, sample, count, length) for _ in range(forwards))
            least[budget] = min(least.get(budget, float("inf")), seconds / (forwards * count * length))
    chosen = choose(least, tolerance)
    # The ladder's top chosen: the cost still fell there, or the item cap ended the ladder below the ceiling
    # (real batches of such items stop there too); either way the operator's ceiling stands.
    return BudgetProbe(max_batch_tokens if chosen == top else chosen, dict(sorted(least.items())))


def choose(seconds_per_token: dict[int, float], tolerance: float) -> int:
    """The smallest budget whose cost per token is within `tolerance` of the cheapest."""
    cheapest = min(seconds_per_token.values())
    return min(budget for budget, cost in seconds_per_token.items() if cost <= (1 + tolerance) * cheapest)


def ladder(top: int) -> list[int]:
    """Budgets from `FLOOR_TOKENS`, doubling, ending at `top` itself."""
    budgets = []
    budget = FLOOR_TOKENS
    while budget < top:
        budgets.append(budget)
        budget *= 2
    return [*budgets, top]


def _seconds(
    backend: ScoringBackend, rng: random.Random, sample: EncodedConversation, count: int, length: int
) -> float:
    try:
        _, started, finished = timed_forward(backend, _random_batch(rng, sample, count, length))
    except Exception as error:  # out of memory at the ceiling, most likely: say which knob fixes it
        raise RuntimeError(
            f"a forward of {count * length} tokens failed in the start-up budget probe ({error}); traffic "
            "would reach that size too: lower max_batch_tokens (PARETORM_MAX_BATCH_TOKENS), or start with "
            "--no-tune-batch-tokens to skip the probe"
        ) from error
    return finished - started


def _random_batch(rng: random.Random, sample: EncodedConversation, count: int, length: int) -> Batch:
    """`count` conversations of `length` ids drawn at random: no two share a prefix, none is cached."""
    gate_index = length // 2 if sample.gate_index >= 0 else -1
    conversations = [
        EncodedConversation(tuple(rng.choices(sample.input_ids, k=length)), gate_index, prefix_len=0)
        for _ in range(count)
    ]
    return whole_batch(conversations, share_prompts=False)
