"""Verbosity de-biasing: the λ search that produces ArmoRM's ``reward_transform_matrix``.

ArmoRM subtracts a multiple of the verbosity objective from every other objective,
``r'_i = r_i − λ_i · r_v``, choosing each λ_i so that the Spearman correlation of ``r'_i`` with ``r_v`` on a
reference set drops to a threshold (armorm.md §2.1; ``find_proper_verbosity_penalties`` in the authors'
``stage-2_train.py``):

- reference rewards are the stage-1 predictions for the chosen *and* the rejected responses, flattened;
- λ_i is the **smallest** value of the grid ``0, .01, .025, …, .95`` with Spearman ≤ threshold
  (CLI default 0.03; the function's own default was 0.028);
- an objective that never gets there keeps λ_i = 1 (we report it as not reached);
- the verbosity objective itself has λ_v = 1.

The matrix is ``T = I; T[v, :] −= λ``, so ``(r @ T)_j = r_j − λ_j r_v`` and ``(r @ T)_v = 0``: verbosity only
enters the score through the negative coefficients it gets from the other objectives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from service.fitting.reference import REFERENCE_CORR_THRESHOLD, REFERENCE_LAMBDA_GRID
from service.fitting.stats import pearson, rankdata


@dataclass(frozen=True)
class DebiasConfig:
    verbosity_index: int
    threshold: float = REFERENCE_CORR_THRESHOLD
    grid: tuple[float, ...] = REFERENCE_LAMBDA_GRID
    fallback_lambda: float = 1.0
    """λ for objectives whose correlation never reaches the threshold (the reference keeps 1)."""

    def __post_init__(self) -> None:
        if not self.grid:
            raise ValueError("the λ grid is empty; pass at least one value, e.g. 0 0.05 0.1 …")


@dataclass(frozen=True)
class DebiasResult:
    verbosity_index: int
    lambdas: np.ndarray
    """(K,) λ per objective; the verbosity objective's entry is 1."""
    reached: np.ndarray
    """(K,) bool: the threshold was met on the grid (True for the verbosity objective)."""
    corr_before: np.ndarray
    """(K,) Spearman(r_i, r_v) on the reference set."""
    corr_after: np.ndarray
    """(K,) Spearman((r @ T)_i, r_v) at the chosen λ; NaN for the verbosity objective (constant 0)."""
    transform: torch.Tensor
    """(K, K) float32 ``reward_transform_matrix``."""


def transform_matrix(lambdas: Sequence[float] | np.ndarray, verbosity_index: int) -> torch.Tensor:
    """``T = I`` with row ``verbosity_index`` reduced by λ (armorm.md §2.1)."""
    lam = torch.as_tensor(np.asarray(lambdas, dtype=np.float32))
    t = torch.eye(lam.numel(), dtype=torch.float32)
    t[verbosity_index, :] -= lam
    return t


def find_verbosity_penalties(rewards: np.ndarray, config: DebiasConfig) -> DebiasResult:
    """Run the grid search on reference rewards (M, K) and build the transform.

    ``rewards`` are raw stage-1 predictions ``Z @ Wᵀ`` of reference responses (chosen and rejected alike).
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 3:
        raise ValueError(f"reference rewards must be (M >= 3, K), got shape {r.shape}; add reference pairs")
    k, v = r.shape[1], config.verbosity_index
    if not 0 <= v < k:
        raise ValueError(f"verbosity index {v} is outside the {k} objectives")
    verbose = r[:, v]
    verbose_ranks = rankdata(verbose)
    grid = sorted(config.grid)
    lambdas = np.full(k, config.fallback_lambda, dtype=np.float64)
    reached = np.zeros(k, dtype=bool)
    corr_before = np.array([pearson(rankdata(r[:, i]), verbose_ranks) for i in range(k)])
    for i in range(k):
        if i == v:
            continue
        for lam in grid:
            if pearson(rankdata(r[:, i] - lam * verbose), verbose_ranks) <= config.threshold:
                lambdas[i], reached[i] = lam, True
                break
    lambdas[v], reached[v] = 1.0, True
    transform = transform_matrix(lambdas, v)
    adjusted = r @ transform.double().numpy()
    corr_after = np.array(
        [np.nan if i == v else pearson(rankdata(adjusted[:, i]), verbose_ranks) for i in range(k)]
    )
    return DebiasResult(v, lambdas, reached, corr_before, corr_after, transform)
