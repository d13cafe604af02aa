"""Batch planning: token budget, item cap, length neighbours, shared prompts kept together, no starvation."""

from __future__ import annotations

from service.engine.planning import batch_cost, build_units, plan_batch, plan_next
from service.engine.types import EncodedConversation


def conv(length: int, prefix: tuple[int, ...] = (), gate: int = 0) -> EncodedConversation:
    body = tuple(range(1000, 1000 + length - len(prefix)))
    return EncodedConversation(prefix + body, gate_index=gate, prefix_len=len(prefix))


def test_budget_and_cap_are_respected() -> None:
    waiting = [conv(n) for n in (10, 50, 12, 11, 49, 13, 100)]
    chosen = plan_batch(waiting, max_batch_tokens=60, max_batch_items=8, share_prompts=False)
    assert 0 in chosen  # the oldest always goes
    assert max(waiting[i].num_tokens for i in chosen) * len(chosen) <= 60
    assert sorted(chosen) == [0, 2, 3, 5]  # its length neighbours, not the long ones
    capped = plan_batch(waiting, max_batch_tokens=10_000, max_batch_items=3, share_prompts=False)
    assert len(capped) == 3 and 0 in capped


def test_oldest_is_served_first_even_when_long() -> None:
    waiting = [conv(100)] + [conv(10) for _ in range(20)]
    chosen = plan_batch(waiting, max_batch_tokens=150, max_batch_items=64, share_prompts=False)
    assert chosen == [0]


def test_shared_prefix_units_stay_together_and_cost_less() -> None:
    prompt_a = tuple(range(40))
    prompt_b = tuple(range(100, 140))
    waiting = [conv(45, prompt_a), conv(50, prompt_b), conv(47, prompt_a), conv(48, prompt_a), conv(44, prompt_b)]
    units = build_units(waiting, share_prompts=True, max_items=64)
    assert sorted(len(unit.members) for unit in units) == [2, 3]
    assert all(unit.shared for unit in units)
    # Unit A: prefix 40 + 3 x longest suffix 8 = 64 tokens, far below 3 x 48 padded.
    unit_a = next(unit for unit in units if 0 in unit.members)
    assert batch_cost([unit_a]) == 40 + 3 * 8
    chosen = plan_batch(waiting, max_batch_tokens=70, max_batch_items=64, share_prompts=True)
    assert chosen == [0, 2, 3]
    unshared = build_units(waiting, share_prompts=False, max_items=64)
    assert len(unshared) == 5


def test_empty_queue_plans_nothing() -> None:
    assert plan_batch([], max_batch_tokens=100, max_batch_items=4, share_prompts=True) == []


def test_a_packed_backend_is_budgeted_by_real_tokens() -> None:
    waiting = [conv(n) for n in (10, 50, 12)]
    units = build_units(waiting, share_prompts=False, max_items=64)
    assert batch_cost(units) == 3 * 50  # padded to the longest
    assert batch_cost(units, packed=True) == 72  # every token once
    prompt = tuple(range(40))
    group = build_units([conv(45, prompt), conv(60, prompt)], share_prompts=True, max_items=64)
    assert batch_cost(group, packed=True) == 40 + 5 + 20  # the prompt once, each response's own tokens
    # Under a 75-token budget the packed planner takes all three; the padded one cannot.
    assert plan_batch(waiting, max_batch_tokens=75, max_batch_items=8, share_prompts=False, packed=True) == [0, 1, 2]
    assert len(plan_batch(waiting, max_batch_tokens=75, max_batch_items=8, share_prompts=False)) < 3


def _drain(waiting: list[EncodedConversation], budget: int, packed: bool) -> list[list[EncodedConversation]]:
    """Every batch the planner makes until nothing waits (what the batcher loop does)."""
    batches = []
    while waiting:
        chosen = plan_batch(waiting, max_batch_tokens=budget, max_batch_items=64, share_prompts=True, packed=packed)
        batches.append([waiting[i] for i in chosen])
        waiting = [c for i, c in enumerate(waiting) if i not in set(chosen)]
    return batches


def test_a_group_larger_than_the_budget_is_split_and_no_forward_exceeds_it() -> None:
    """Issue 11: one shared group used to run as one forward over max_batch_tokens (an OOM on a GPU)."""
    prompt = tuple(range(100))
    for packed in (True, False):
        group = [conv(100 + 20 + k, prompt, gate=99) for k in range(30)] + [conv(40), conv(45)]
        batches = _drain(group, budget=400, packed=packed)
        assert sum(len(b) for b in batches) == 32
        for batch in batches:
            # Costed as the backend lays the batch out: it regroups by prefix on its own.
            assert batch_cost(build_units(batch, True, max_items=len(batch)), packed) <= 400
        assert len(batches) > 1


def test_units_stay_within_a_token_cap() -> None:
    prompt = tuple(range(50))
    units = build_units([conv(60, prompt, gate=49) for _ in range(10)], True, max_items=64, max_tokens=120)
    assert all(batch_cost([unit], packed=True) <= 120 for unit in units)
    assert [len(unit.members) for unit in units] == [7, 3]


def test_packed_fills_smallest_request_first_after_the_oldest() -> None:
    """A one-item request behind a big one's queued items rides in the next forward (latency under mixed
    traffic); the oldest item still goes first, so a stream of small requests cannot starve a big one."""
    big = [conv(30) for _ in range(8)]  # one request of 8, queued first
    small = [conv(30), conv(30)]  # two one-item requests after it
    waiting = big + small
    sizes = [8] * 8 + [1, 1]
    chosen = plan_next(waiting, max_batch_tokens=120, max_batch_items=64, share_prompts=False, packed=True,
                       request_sizes=sizes)[0]
    assert chosen == [0, 1, 8, 9]  # the oldest, then both small requests, then the big one's next in order
    without = plan_next(waiting, max_batch_tokens=120, max_batch_items=64, share_prompts=False,
                        packed=True)[0]
    assert 8 not in without and 9 not in without  # the length-neighbour growth leaves them behind
    capped = plan_next(waiting, max_batch_tokens=10_000, max_batch_items=3, share_prompts=False, packed=True,
                       request_sizes=sizes)[0]
    assert capped == [0, 8, 9]


def test_smallest_first_keeps_groups_whole_and_skips_what_does_not_fit() -> None:
    prompt = tuple(range(40))
    group = [conv(50, prompt) for _ in range(3)]  # one GRPO request: the prompt once, 70 tokens packed
    waiting = [conv(20), *group, conv(60), conv(15)]
    sizes = [1, 3, 3, 3, 1, 1]
    chosen = plan_next(waiting, max_batch_tokens=200, max_batch_items=64, share_prompts=True, packed=True,
                       request_sizes=sizes)[0]
    assert chosen == [0, 1, 2, 3, 4, 5]  # 20 + 60 + 15 + 70 = 165: everything
    tight = plan_next(waiting, max_batch_tokens=100, max_batch_items=64, share_prompts=True, packed=True,
                      request_sizes=sizes)[0]
    assert tight == [0, 4, 5]  # the oldest, then the small ones (95); the group (70) waits whole, not split


def test_request_sizes_leave_the_padded_planner_to_length_neighbours() -> None:
    waiting = [conv(n) for n in (10, 50, 12, 11, 49, 13, 100)]
    sizes = [7, 7, 7, 7, 1, 7, 1]
    budget = {"max_batch_tokens": 60, "max_batch_items": 8, "share_prompts": False}
    given = plan_next(waiting, **budget, request_sizes=sizes)[0]
    assert given == plan_batch(waiting, **budget) == [0, 2, 3, 5]


def test_a_conversation_over_a_probed_budget_waits_its_turn_then_runs_alone() -> None:
    """The start-up probe may plan below max_input_tokens: such a conversation is skipped while younger
    ones fit, and goes alone (within max_batch_tokens) once it is the oldest, so it never starves."""
    waiting = [conv(30), conv(300), conv(30), conv(30)]
    for sizes in ([1, 1, 1, 1], None):
        first = plan_next(waiting, max_batch_tokens=100, max_batch_items=64, share_prompts=False, packed=True,
                          request_sizes=sizes)[0]
        assert first == [0, 2, 3]
        rest = [waiting[1]]
        assert plan_next(rest, max_batch_tokens=100, max_batch_items=64, share_prompts=False, packed=True,
                         request_sizes=sizes and [1])[0] == [0]
