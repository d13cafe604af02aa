"""The result of one reward-model forward pass.

All four tensors are float32 and live on the model's device (the heads run in float32 even when the
backbone is bf16); call ``.cpu()`` or ``.to_lists()`` to hand them to code that does not know torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RewardOutput", "RewardRow"]


@dataclass(frozen=True)
class RewardRow:
    """One scored sequence as plain Python numbers, objectives in head-row order."""

    rewards: list[float]
    gating: list[float]
    coefficients: list[float]
    score: float


@dataclass(frozen=True)
class RewardOutput:
    """Per-objective rewards, gate weights, effective coefficients and the gated score of a batch.

    * ``rewards`` ``(B, K)`` — raw regression outputs, one per objective.
    * ``gating`` ``(B, K)`` — gate weights on the prompt (sum to ``logit_scale``; ``1/K`` for plain
      classifiers).
    * ``coefficients`` ``(B, K)`` — ``gating @ T^T``: the weights the score puts on the *raw* rewards,
      so that ``score == (rewards * coefficients).sum(-1)``.
    * ``score`` ``(B,)`` — ``sum(gating * (rewards @ T), -1)``.
    """

    rewards: torch.Tensor
    gating: torch.Tensor
    coefficients: torch.Tensor
    score: torch.Tensor

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def cpu(self) -> RewardOutput:
        return RewardOutput(
            *(t.detach().cpu() for t in (self.rewards, self.gating, self.coefficients, self.score))
        )

    def row(self, i: int) -> RewardRow:
        """Row ``i`` as Python floats."""
        return RewardRow(
            rewards=self.rewards[i].tolist(),
            gating=self.gating[i].tolist(),
            coefficients=self.coefficients[i].tolist(),
            score=float(self.score[i]),
        )

    def to_lists(self) -> list[RewardRow]:
        """Every row as Python floats (one device-to-host copy per tensor)."""
        out = self.cpu()
        r, g, c, s = (t.tolist() for t in (out.rewards, out.gating, out.coefficients, out.score))
        return [RewardRow(rewards=r[i], gating=g[i], coefficients=c[i], score=s[i]) for i in range(len(s))]
