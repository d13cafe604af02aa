"""Turning a model's `RewardOutput` (torch) into the batcher's `ScoreRows` (numpy, float64)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from service.engine.types import ScoreRows


def pack_output(output: Any) -> np.ndarray:
    """One (B, 3K+1) float64 array per batch: rewards | gating | coefficients | score."""
    parts = [output.rewards, output.gating, output.coefficients, output.score[:, None]]
    return torch.cat([part.detach().float().cpu() for part in parts], dim=1).double().numpy()


def rows_from_stacked(stacked: np.ndarray, computed_tokens: int) -> ScoreRows:
    k = (stacked.shape[1] - 1) // 3 if stacked.size else 0
    return ScoreRows(
        rewards=stacked[:, :k],
        gating=stacked[:, k : 2 * k],
        coefficients=stacked[:, 2 * k : 3 * k],
        score=stacked[:, 3 * k] if stacked.size else np.zeros(0),
        computed_tokens=computed_tokens,
    )
