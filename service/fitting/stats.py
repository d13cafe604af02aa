"""Small statistics the fitting stages need, in numpy: ranks, Pearson, Spearman, a reproducible split.

scipy and sklearn are not dependencies of paretorm, so the two pieces of them the ArmoRM recipe uses are
re-implemented here: `scipy.stats.spearmanr` (average ranks for ties, then Pearson on the ranks) and the
index split of `sklearn.model_selection.train_test_split`.
"""

from __future__ import annotations

import math

import numpy as np


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their average rank (scipy's ``method="average"``)."""
    x = np.asarray(values)
    if x.ndim != 1:
        raise ValueError(f"rankdata expects a 1-D array, got shape {x.shape}")
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    sorted_x = x[order]
    new_group = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    dense = np.cumsum(new_group)[inverse]  # 1-based group id of each element
    bounds = np.r_[np.nonzero(new_group)[0], x.size]  # group g spans sorted positions bounds[g-1]..bounds[g]-1
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation in float64; NaN when either side is constant (no linear relation is defined)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pearson expects two 1-D arrays of one length, got {x.shape} and {y.shape}")
    if x.size < 2:
        return math.nan
    xc = x - x.mean()
    yc = y - y.mean()
    denom = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return math.nan if denom == 0.0 else float(xc @ yc) / denom


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation: Pearson on average ranks, as ``scipy.stats.spearmanr`` computes it."""
    return pearson(rankdata(np.asarray(a)), rankdata(np.asarray(b)))


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a shuffled train/validation split, the same as sklearn's ``train_test_split``.

    sklearn draws ``RandomState(seed).permutation(n)`` and takes the first ``ceil(val_fraction * n)``
    indices for the held-out part; doing the same keeps the reference recipe's splits (stage 1 seed 42,
    stage 2 seed 0) [our reading of sklearn's ShuffleSplit].
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 examples to split into train and validation, got {n}")
    n_val = min(n - 1, max(1, math.ceil(val_fraction * n)))
    permutation = np.random.RandomState(seed).permutation(n)
    return permutation[n_val:], permutation[:n_val]
