"""Prompt + completion token ids as one padded batch, and the policy's per-token log-probs over it.

Every trainer needs the same forward: the completion tokens' log-probs (and, for PPO critics, the hidden
state that predicted each of them). Prompts and completions are laid out left-aligned and right-padded;
``completion_mask[N, T]`` marks real completion tokens so losses never see padding or prompt positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from service.training.losses import token_logprobs


@dataclass
class SequenceBatch:
    """input_ids / attention_mask [N, L]; completion tokens at ``positions[N, T]`` with ``completion_mask``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    completion_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: torch.Tensor | slice) -> SequenceBatch:
        return SequenceBatch(*(t[index] for t in (self.input_ids, self.attention_mask, self.targets,
                                                    self.positions, self.completion_mask)))  # fmt: skip

    def to(self, device: str | torch.device) -> SequenceBatch:
        return SequenceBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.targets,
                                                       self.positions, self.completion_mask)))  # fmt: skip


def build_batch(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int) -> SequenceBatch:
    """Lay out ``prompts[i] + completions[i]``; an empty completion gets an all-zero mask row."""
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions, strict=True)]
    width, steps = max(lengths), max(1, max(len(c) for c in completions))
    n = len(prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    targets = torch.full((n, steps), pad_id, dtype=torch.long)
    positions = torch.zeros((n, steps), dtype=torch.long)
    mask = torch.zeros((n, steps), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        row = list(p) + list(c)
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        if c:
            targets[i, : len(c)] = torch.tensor(list(c))
            # the logit at position j predicts token j + 1: completion token k is predicted at len(p) + k - 1
            positions[i, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))
            mask[i, : len(c)] = 1.0
    return SequenceBatch(input_ids, attention, targets, positions, mask)


def forward_logprobs(
    model: nn.Module, batch: SequenceBatch, temperature: float = 1.0, *, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Completion log-probs [N, T] (and the last hidden states at the predicting positions [N, T, H]).

    Only the positions from the earliest completion onwards go through the LM head (``logits_to_keep``):
    on chat prompts that is most of the vocabulary projection saved.
    """
    first = int(batch.positions[:, 0].min())
    keep = batch.input_ids.shape[1] - first
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=hidden,
                logits_to_keep=keep)  # fmt: skip
    index = (batch.positions - first).clamp(min=0).unsqueeze(-1)
    logits = torch.gather(out.logits, 1, index.expand(-1, -1, out.logits.shape[-1]))
    logp = token_logprobs(logits, batch.targets, temperature) * batch.completion_mask
    if not hidden:
        return logp, None
    states = out.hidden_states[-1]
    return logp, torch.gather(states, 1, (index + first).expand(-1, -1, states.shape[-1]))


@torch.no_grad()
def batched_logprobs(model: nn.Module, batch: SequenceBatch, temperature: float, chunk: int = 16) -> torch.Tensor:
    """`forward_logprobs` without gradients, in chunks (old-policy and reference log-probs)."""
    parts = [forward_logprobs(model, batch.select(slice(i, i + chunk)), temperature)[0]
             for i in range(0, len(batch), chunk)]  # fmt: skip
    return torch.cat(parts)


def rollout_logprobs(completions: Sequence[Sequence[object]], like: torch.Tensor) -> torch.Tensor | None:
    """The rollout engine's log-probs of the flattened completions as [N, T] (like ``like``), or None."""
    sampled = [c.logprobs for group in completions for c in group]  # type: ignore[attr-defined]
    if not sampled or any(s is None for s in sampled):
        return None
    values = torch.zeros_like(like)
    for i, row in enumerate(sampled):
        values[i, : len(row)] = torch.tensor(row, dtype=like.dtype)
    return values
