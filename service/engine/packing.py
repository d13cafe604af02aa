"""Laying a planned batch out for the packed forward (`service.model.packed_decoder`).

Every planning unit becomes computed rows plus attention sequences:
- a plain conversation: all its tokens, one causal sequence; its reward state (last token) and gate state
  are read out;
- a shared prompt (a GRPO group, or one conversation whose prompt an earlier batch left in the prefix
  cache): the prompt's tokens once, as their own causal sequence, unless cached (then its keys/values come
  from the cache and are not recomputed); each response's tokens with keys = prompt rows + its own rows,
  the prompt rows marked as shared keys (the bucket kernels attend them once for the whole group).
  The gate state is read from the prompt (or the cache), the reward state from each response's last token.
Prompt states worth keeping for later batches are listed in `keep` and stored by the backend afterwards.

`row_multiple` rounds the computed row count up with padding rows that belong to no attention sequence
(token 0 at position 0: never a query, never a key, never read out). oneDNN builds a GEMM primitive per
new row count, and in serving the count is new on every batch: on an AMX Xeon that cost ~12.7 ms per batch
(9 primitive-cache misses), 64-row rounding removed it (+10%, `cpu-profile-amx.md`). The padding is at
most `row_multiple - 1` rows and is not counted in `computed_tokens`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from service.engine.lru import PrefixState, PrefixStateCache
from service.engine.types import EncodedConversation, Unit
from service.model.attention_plans import AttentionPlan
from service.model.packed_attention import AttentionSequence
from service.model.packed_decoder import PackedInput

# (sequences, readout sequences) -> their plans: `PackedDecoder.plan_attention` with dtype and device bound
AttentionPlanner = Callable[
    [Sequence[AttentionSequence], Sequence[AttentionSequence]], tuple[AttentionPlan, AttentionPlan]
]


@dataclass(frozen=True, slots=True)
class GateSource:
    """Where an item's gate state comes from: a readout position, or a state kept by an earlier batch."""

    readout: int = -1
    cached: torch.Tensor | None = None


@dataclass(frozen=True, slots=True)
class PackedLayout:
    packed: PackedInput
    reward_readouts: list[int]  # per batch item: position in the readout rows
    gates: list[GateSource]  # per batch item
    keep_keys: list[tuple[tuple[int, ...], int]]  # per kept range: (prefix key, readout of its gate state)
    computed_tokens: int


class _Builder:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.readouts: list[int] = []  # computed rows, in readout order, each once
        self.readout_of: dict[int, int] = {}  # computed row -> its position in `readouts`
        self.sequences: list[AttentionSequence] = []

    def add_rows(self, tokens: Sequence[int], first_position: int) -> list[int]:
        start = len(self.tokens)
        self.tokens.extend(tokens)
        self.positions.extend(range(first_position, first_position + len(tokens)))
        return list(range(start, start + len(tokens)))

    def readout(self, row: int) -> int:
        if row not in self.readout_of:
            self.readout_of[row] = len(self.readouts)
            self.readouts.append(row)
        return self.readout_of[row]


def build_layout(
    batch: Sequence[EncodedConversation],
    units: Sequence[Unit],
    prefix_cache: PrefixStateCache | None,
    *,
    plan_attention: AttentionPlanner,
    device: torch.device,
    row_multiple: int = 1,
) -> PackedLayout:
    builder = _Builder()
    reward: list[int] = [-1] * len(batch)
    gates: list[GateSource] = [GateSource()] * len(batch)
    cached_states: list[PrefixState] = []
    cached_rows: list[tuple[int, int]] = []  # per cached prompt: (first row in the key pool, prompt length)
    keep: list[tuple[tuple[int, ...], list[int], int]] = []  # (key, computed rows, gate readout)
    # Sequences whose keys live in cached prompts are finished once the pool offsets are known.
    pending_cached: list[tuple[int, list[int], list[int]]] = []  # (cached index, branch rows, positions)

    for unit in units:
        first = batch[unit.members[0]]
        key = first.prefix_key() if unit.prefix_len else None
        state = prefix_cache.get(key) if prefix_cache is not None and key is not None else None
        if state is None and not unit.shared:
            _add_plain(builder, batch, unit.members[0], reward, gates, keep, prefix_cache)
            continue
        p = unit.prefix_len
        if state is not None:
            gate = GateSource(cached=state[0])
            cached_states.append(state)
            trunk_keys: list[int] | None = None
        else:
            trunk = builder.add_rows(first.input_ids[:p], 0)
            builder.sequences.append(AttentionSequence(trunk, list(range(p)), trunk, list(range(p))))
            gate = GateSource(readout=builder.readout(trunk[first.gate_index]))
            trunk_keys = trunk
            if prefix_cache is not None and key is not None:
                keep.append((key, trunk, gate.readout))
        for member in unit.members:
            conversation = batch[member]
            branch = builder.add_rows(conversation.input_ids[p:], p)
            positions = list(range(p, conversation.num_tokens))
            reward[member] = builder.readout(branch[-1])
            gates[member] = gate
            if trunk_keys is None:
                pending_cached.append((len(cached_states) - 1, branch, positions))
            else:
                builder.sequences.append(
                    AttentionSequence(branch, positions, trunk_keys + branch, list(range(p)) + positions, p)
                )

    computed = len(builder.tokens)
    padding = -computed % row_multiple
    builder.tokens.extend([0] * padding)
    builder.positions.extend([0] * padding)
    offset = computed + padding  # the cached prompts' keys follow every computed row, padding included
    for state in cached_states:
        cached_rows.append((offset, state[1][0][0].shape[2]))
        offset += cached_rows[-1][1]
    for cached_index, branch, positions in pending_cached:
        start, length = cached_rows[cached_index]
        keys, key_positions = list(range(start, start + length)) + branch, list(range(length)) + positions
        builder.sequences.append(AttentionSequence(branch, positions, keys, key_positions, length))

    sequences = builder.sequences
    readout_of = builder.readout_of
    readout_sequences = [
        AttentionSequence(
            [readout_of[row] for row in s.query_rows if row in readout_of],
            [pos for row, pos in zip(s.query_rows, s.query_positions, strict=True) if row in readout_of],
            s.key_rows,
            s.key_positions,
            s.shared_keys,
        )
        for s in sequences
    ]
    attention, readout_attention = plan_attention(sequences, readout_sequences)
    packed = PackedInput(
        input_ids=torch.tensor(builder.tokens, dtype=torch.long, device=device),
        positions=torch.tensor(builder.positions, dtype=torch.long, device=device),
        attention=attention,
        readout_rows=torch.tensor(builder.readouts, dtype=torch.long, device=device),
        readout_attention=readout_attention,
        cached=[state[1] for state in cached_states],
        keep=[torch.tensor(rows, dtype=torch.long, device=device) for _, rows, _ in keep],
    )
    return PackedLayout(
        packed=packed,
        reward_readouts=reward,
        gates=gates,
        keep_keys=[(key, gate_readout) for key, _, gate_readout in keep],
        computed_tokens=computed,
    )


def _add_plain(
    builder: _Builder,
    batch: Sequence[EncodedConversation],
    index: int,
    reward: list[int],
    gates: list[GateSource],
    keep: list[tuple[tuple[int, ...], list[int], int]],
    prefix_cache: PrefixStateCache | None,
) -> None:
    conversation = batch[index]
    rows = builder.add_rows(conversation.input_ids, 0)
    positions = list(range(conversation.num_tokens))
    builder.sequences.append(AttentionSequence(rows, positions, rows, positions))
    reward[index] = builder.readout(rows[-1])
    gate_row = rows[conversation.gate_index] if conversation.gate_index >= 0 else rows[-1]
    gates[index] = GateSource(readout=builder.readout(gate_row))
    key = conversation.prefix_key()
    if prefix_cache is not None and key is not None and 0 <= conversation.gate_index < conversation.prefix_len:
        keep.append((key, rows[: conversation.prefix_len], gates[index].readout))
