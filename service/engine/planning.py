"""Batch planning: which waiting conversations go into the next forward pass.

Pure functions, no asyncio and no torch, so the policy is tested on its own. The policy:
- conversations sharing a prompt prefix form one *unit* (the backend computes the prefix once), so a GRPO
  group is never split across batches unless it alone exceeds the budget;
- the batch is seeded with the *oldest* unit, so no request starves behind a stream of better-fitting
  ones. It then grows towards its neighbours in length, so padding stays small; or, on a packed backend
  given request sizes, smallest request first, so a one-item request queued behind thousands of items from
  big clients goes into the next forward instead of waiting for all of them (measured: `plan_next`);
- the cost of a batch is what the backend will compute: for a packed backend the real tokens (a shared
  prompt once); otherwise padded tokens for plain items and `prefix + members x longest suffix` for a
  shared unit. It must fit `max_batch_tokens`, and the batch holds at most `max_batch_items`
  conversations.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.engine.types import Batch, EncodedConversation, Unit

__all__ = ["Unit", "as_batch", "batch_cost", "build_units", "plan_batch", "plan_next", "whole_batch"]


def build_units(
    waiting: Sequence[EncodedConversation],
    share_prompts: bool,
    max_items: int,
    max_tokens: int | None = None,
    packed: bool = False,
) -> list[Unit]:
    """Group waiting conversations by shared prefix (when sharing is on), in arrival order.

    A unit holds at most `max_items` members and, when `max_tokens` is given, costs at most that many
    tokens (`batch_cost`): a GRPO group larger than the forward budget becomes several units with the
    same prefix, which `plan_batch` never puts in one batch, so no forward exceeds `max_batch_tokens`.
    """
    units: list[Unit] = []
    by_prefix: dict[tuple[int, ...], Unit] = {}
    for index, conversation in enumerate(waiting):
        key = conversation.prefix_key() if share_prompts else None
        unit = by_prefix.get(key) if key is not None else None
        if unit is None or len(unit.members) >= max_items or _over(unit, conversation, max_tokens, packed):
            unit = Unit(key=key, prefix_len=conversation.prefix_len if key is not None else 0, oldest=index)
            units.append(unit)
            if key is not None:
                by_prefix[key] = unit
        unit.members.append(index)
        unit.max_len = max(unit.max_len, conversation.num_tokens)
        unit.suffix_tokens += conversation.num_tokens - unit.prefix_len
    return units


def _over(unit: Unit, conversation: EncodedConversation, max_tokens: int | None, packed: bool) -> bool:
    """Whether adding `conversation` would take `unit` over `max_tokens`."""
    if max_tokens is None:
        return False
    grown = Unit(
        members=[*unit.members, -1],
        prefix_len=unit.prefix_len,
        max_len=max(unit.max_len, conversation.num_tokens),
        suffix_tokens=unit.suffix_tokens + conversation.num_tokens - unit.prefix_len,
    )
    return batch_cost([grown], packed) > max_tokens


def batch_cost(units: Sequence[Unit], packed: bool = False) -> int:
    """Tokens the backend computes for these units: every real token once (a shared prompt once) when
    `packed`; else padded plain rows plus each shared unit's own pass."""
    if packed:
        return sum(unit.prefix_len + unit.suffix_tokens if unit.shared else unit.max_len for unit in units)
    plain = [unit for unit in units if not unit.shared]
    plain_cost = len(plain) * max((unit.max_len for unit in plain), default=0)
    shared_cost = sum(
        unit.prefix_len + len(unit.members) * (unit.max_len - unit.prefix_len) for unit in units if unit.shared
    )
    return plain_cost + shared_cost


def plan_batch(
    waiting: Sequence[EncodedConversation],
    *,
    max_batch_tokens: int,
    max_batch_items: int,
    share_prompts: bool,
    packed: bool = False,
) -> list[int]:
    """Indices (into `waiting`) of the conversations to run next; empty only when nothing waits."""
    return plan_next(
        waiting, max_batch_tokens=max_batch_tokens, max_batch_items=max_batch_items,
        share_prompts=share_prompts, packed=packed,
    )[0]  # fmt: skip


def plan_next(
    waiting: Sequence[EncodedConversation],
    *,
    max_batch_tokens: int,
    max_batch_items: int,
    share_prompts: bool,
    packed: bool = False,
    request_sizes: Sequence[int] | None = None,
) -> tuple[list[int], Batch]:
    """The next batch, planned once: ascending indices into `waiting` and the `Batch` the backend runs.

    The oldest unit always goes in, alone when it alone is over the budget: a conversation longer than a
    budget the start-up probe chose below `max_input_tokens` (`budget_probe`), never longer than
    `max_batch_tokens` (the scorer rejects inputs over `max_input_tokens` <= `max_batch_tokens`, and
    `build_units` splits larger groups). Two units with the same prefix never share a batch: the backend
    would compute that prompt twice.

    `request_sizes[i]`: how many conversations of `waiting[i]`'s request are waiting. On a packed backend
    (no padding, so neighbours in length gain nothing) the rest of the batch is then filled smallest request
    first, in arrival order among equals: shortest-remaining-first, which minimises the mean wait. With 4
    clients keeping 64-item requests queued beside one-item requests at 4/s (bench model, 2-core Intel Xeon
    AMX-BF16, 2 rounds), the one-item p50 went from 2.1-2.4 s (p99 5.5-6.6 s) to 1.1 s (p99 1.6 s) with the
    batcher's late planning; vLLM's server, first come first served, 3.5-5.2 s.
    """
    if not waiting:
        return [], Batch((), ())
    units = build_units(waiting, share_prompts, max_batch_items, max_batch_tokens, packed)
    if packed and request_sizes is not None:
        return _renumbered(waiting, _smallest_requests_first(units, request_sizes, max_batch_tokens,
                                                             max_batch_items))
    units.sort(key=lambda unit: unit.max_len)
    seed = min(range(len(units)), key=lambda position: units[position].oldest)
    chosen = [units[seed]]
    keys = {units[seed].key}
    count = len(units[seed].members)
    low, high = seed - 1, seed + 1
    while low >= 0 or high < len(units):
        grew = False
        for position in (high, low):
            if not 0 <= position < len(units):
                continue
            candidate = units[position]
            if count + len(candidate.members) > max_batch_items:
                continue
            if candidate.key is not None and candidate.key in keys:  # one prompt, computed twice
                continue
            if batch_cost([*chosen, candidate], packed) > max_batch_tokens:
                continue
            chosen.append(candidate)
            keys.add(candidate.key)
            count += len(candidate.members)
            if position == high:
                high += 1
            else:
                low -= 1
            grew = True
            break
        if not grew:
            break
    return _renumbered(waiting, chosen)


def _smallest_requests_first(
    units: list[Unit], request_sizes: Sequence[int], max_batch_tokens: int, max_batch_items: int
) -> list[Unit]:
    """The oldest unit, then every unit that fits, smallest request first (packed cost: additive)."""
    seed = min(units, key=lambda unit: unit.oldest)
    chosen, keys = [seed], {seed.key}
    count, cost = len(seed.members), batch_cost([seed], packed=True)
    for unit in sorted(units, key=lambda unit: (min(request_sizes[m] for m in unit.members), unit.oldest)):
        if unit is seed or count + len(unit.members) > max_batch_items:
            continue
        if unit.key is not None and unit.key in keys:  # one prompt, computed twice
            continue
        unit_cost = batch_cost([unit], packed=True)
        if cost + unit_cost > max_batch_tokens:
            continue
        chosen.append(unit)
        keys.add(unit.key)
        count, cost = count + len(unit.members), cost + unit_cost
    return chosen


def _renumbered(waiting: Sequence[EncodedConversation], chosen: Sequence[Unit]) -> tuple[list[int], Batch]:
    """The chosen units with members renumbered from `waiting` positions to positions in the batch."""
    indices = sorted(index for unit in chosen for index in unit.members)
    position = {index: slot for slot, index in enumerate(indices)}
    units = [
        Unit([position[m] for m in unit.members], unit.key, unit.prefix_len, unit.max_len,
             position[unit.oldest], unit.suffix_tokens)
        for unit in sorted(chosen, key=lambda unit: unit.oldest)  # arrival order, as the layout expects
    ]  # fmt: skip
    return indices, Batch(tuple(waiting[i] for i in indices), tuple(units))


def whole_batch(conversations: Sequence[EncodedConversation], share_prompts: bool) -> Batch:
    """All of `conversations` as one batch, grouped by shared prompt (for warm-up, benchmarks and tests)."""
    return Batch(tuple(conversations), tuple(build_units(conversations, share_prompts, len(conversations) or 1)))


def as_batch(batch: Batch | Sequence[EncodedConversation], share_prompts: bool) -> Batch:
    """`batch` itself when already planned, else `whole_batch` of it."""
    return batch if isinstance(batch, Batch) else whole_batch(batch, share_prompts)
