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

from service.engine.prefix_cache import PrefixState, PrefixStateCache
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


def build_layout(
    batch: Sequence[EncodedConversation],
    units: Sequence[Unit],
    prefix_cache: PrefixStateCache | None,
    *,
    plan_attention: AttentionPlanner,
    device: torch.device,
    row_multiple: int = 1,
) -> PackedLayout:
    builder = _LayoutBuilder(batch, prefix_cache)
    for unit in units:
        first = batch[unit.members[0]]
        key = first.prefix_key() if unit.prefix_len else None
        state = prefix_cache.get(key) if prefix_cache is not None and key is not None else None
        if state is None and not unit.shared:
            builder.add_plain(unit.members[0])
        else:
            builder.add_shared_prompt(unit, key, state)
    computed = builder.pad(row_multiple)
    builder.attend_cached_prompts()
    attention, readout_attention = plan_attention(builder.sequences, builder.readout_sequences())
    return builder.finish(attention, readout_attention, computed, device)


class _LayoutBuilder:
    """The computed rows, attention sequences and readouts of one layout, added unit by unit."""

    def __init__(self, batch: Sequence[EncodedConversation], prefix_cache: PrefixStateCache | None) -> None:
        self.batch, self.prefix_cache = batch, prefix_cache
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.readouts: list[int] = []  # computed rows, in readout order, each once
        self.readout_of: dict[int, int] = {}  # computed row -> its position in `readouts`
        self.sequences: list[AttentionSequence] = []
        self.reward: list[int] = [-1] * len(batch)  # per item: its reward state's readout
        self.gates: list[GateSource] = [GateSource()] * len(batch)
        self.cached_states: list[PrefixState] = []
        self.keep: list[tuple[tuple[int, ...], list[int], int]] = []  # (key, computed rows, gate readout)
        # Sequences whose keys live in cached prompts, finished once the pool offsets are known:
        # (cached index, branch rows, positions)
        self.pending_cached: list[tuple[int, list[int], list[int]]] = []

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

    def add_plain(self, index: int) -> None:
        """One conversation, all its tokens as one causal sequence; its prompt kept when worth it."""
        conversation = self.batch[index]
        rows = self.add_rows(conversation.input_ids, 0)
        positions = list(range(conversation.num_tokens))
        self.sequences.append(AttentionSequence(rows, positions, rows, positions))
        self.reward[index] = self.readout(rows[-1])
        gate_row = rows[conversation.gate_index] if conversation.gate_index >= 0 else rows[-1]
        self.gates[index] = GateSource(readout=self.readout(gate_row))
        key = conversation.prefix_key()
        gate_in_prompt = 0 <= conversation.gate_index < conversation.prefix_len
        if self.prefix_cache is not None and key is not None and gate_in_prompt:
            self.keep.append((key, rows[: conversation.prefix_len], self.gates[index].readout))

    def add_shared_prompt(self, unit: Unit, key: tuple[int, ...] | None, state: PrefixState | None) -> None:
        """A prompt computed once (or taken from the cache: `state`) and each member's response after it."""
        first, p = self.batch[unit.members[0]], unit.prefix_len
        trunk: list[int] | None = None
        if state is not None:
            gate = GateSource(cached=state[0])
            self.cached_states.append(state)
        else:
            trunk = self.add_rows(first.input_ids[:p], 0)
            self.sequences.append(AttentionSequence(trunk, list(range(p)), trunk, list(range(p))))
            gate = GateSource(readout=self.readout(trunk[first.gate_index]))
            if self.prefix_cache is not None and key is not None:
                self.keep.append((key, trunk, gate.readout))
        for member in unit.members:
            conversation = self.batch[member]
            branch = self.add_rows(conversation.input_ids[p:], p)
            positions = list(range(p, conversation.num_tokens))
            self.reward[member] = self.readout(branch[-1])
            self.gates[member] = gate
            if trunk is None:
                self.pending_cached.append((len(self.cached_states) - 1, branch, positions))
            else:
                self.sequences.append(
                    AttentionSequence(branch, positions, trunk + branch, list(range(p)) + positions, p)
                )

    def pad(self, row_multiple: int) -> int:
        """Round the rows up to `row_multiple` (module docstring); returns the rows computed before."""
        computed = len(self.tokens)
        padding = -computed % row_multiple
        self.tokens.extend([0] * padding)
        self.positions.extend([0] * padding)
        return computed

    def attend_cached_prompts(self) -> None:
        """The sequences of responses to cached prompts, whose keys follow every computed row (padding
        included) in the key pool, prompt after prompt."""
        offset = len(self.tokens)
        cached_rows: list[tuple[int, int]] = []  # per cached prompt: (first row in the key pool, length)
        for state in self.cached_states:
            cached_rows.append((offset, state[1][0][0].shape[2]))
            offset += cached_rows[-1][1]
        for cached_index, branch, positions in self.pending_cached:
            start, length = cached_rows[cached_index]
            keys, key_positions = list(range(start, start + length)) + branch, list(range(length)) + positions
            self.sequences.append(AttentionSequence(branch, positions, keys, key_positions, length))

    def readout_sequences(self) -> list[AttentionSequence]:
        """The last layer's sequences: each one's queries cut to its readout rows, in readout order."""
        readout_of = self.readout_of
        return [
            AttentionSequence(
                [readout_of[row] for row in s.query_rows if row in readout_of],
                [pos for row, pos in zip(s.query_rows, s.query_positions, strict=True) if row in readout_of],
                s.key_rows,
                s.key_positions,
                s.shared_keys,
            )
            for s in self.sequences
        ]

    def finish(
        self, attention: AttentionPlan, readout_attention: AttentionPlan, computed: int, device: torch.device
    ) -> PackedLayout:
        def tensor(values: Sequence[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        packed = PackedInput(
            input_ids=tensor(self.tokens),
            positions=tensor(self.positions),
            attention=attention,
            readout_rows=tensor(self.readouts),
            readout_attention=readout_attention,
            cached=[state[1] for state in self.cached_states],
            keep=[tensor(rows) for _, rows, _ in self.keep],
        )
        return PackedLayout(
            packed=packed,
            reward_readouts=self.reward,
            gates=self.gates,
            keep_keys=[(key, gate_readout) for key, _, gate_readout in self.keep],
            computed_tokens=computed,
        )
