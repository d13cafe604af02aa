"""PAMA's closed-form combination of per-objective advantages (He & Maghsudi, arXiv 2508.07768).

Under Noon PPO every objective's policy gradient for a token points along the same ``∇u_t``; objectives
differ only by the scalar ``a_i = I(A^(i)) = A^(i) · 1{u ≤ 1+ε}``. MGDA's min-norm problem then collapses
to ``min_{c ∈ Δ_n} (Σ_i c_i a_i)²`` whose optimum (Theorem 1) is the projection of 0 onto
``[min_i a_i, max_i a_i]``. That is two reductions per row, so this module solves any number of rows at
once with numpy along the last axis — no Python loop over elements.

Decisions (each documented where it is made):
- Granularity is the caller's: ``advantages`` has shape ``[..., n]`` and only the last axis is reduced,
  so a trainer can pass per-token ``[B, T, n]``, per-sequence ``[B, n]`` or a batch aggregate ``[n]``.
- ``ratios`` has shape ``[...]``: one policy ratio per leading element (token or sequence), broadcast
  over the objectives, because the ratio ``u_t`` is a property of the action, not of an objective.
- The weights ``c`` that attain ``s*`` are [our reading]; the paper's own statement of ``c`` was not seen.
- Ties go to the lowest objective index everywhere (numpy's argmin/argmax convention), so equal inputs
  always give equal weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.objectives.validation import ObjectiveInputError, index_path, validate_nested

__all__ = ["PamaResult", "pama_combine", "CASE_ALL_POSITIVE", "CASE_ALL_NEGATIVE", "CASE_STRADDLE"]

CASE_ALL_POSITIVE = 1
"""Every ``a_i > 0``: ``s* = min a`` and all weight goes to the argmin objective."""
CASE_ALL_NEGATIVE = -1
"""Every ``a_i < 0``: ``s* = max a`` and all weight goes to the argmax objective."""
CASE_STRADDLE = 0
"""``min a ≤ 0 ≤ max a``: ``s* = 0`` (one-hot on the first zero, else a two-objective mix)."""


@dataclass(frozen=True, slots=True)
class PamaResult:
    """Solution of ``min_{c ∈ Δ_n} (c·a)²`` for every row of ``a``.

    Attributes:
        combined: ``s*``, shape ``[...]`` — the combined (consensus) advantage to use as PPO's ``A_t``.
        weights: ``c``, shape ``[..., n]``, on the simplex, with ``Σ c·a = s*``.
        effective: ``a`` after the Noon clip and the ratio mask, shape ``[..., n]`` (what was solved).
        index_low: argmin of ``a`` along the last axis (lowest index on ties), shape ``[...]``.
        index_high: argmax of ``a`` along the last axis (lowest index on ties), shape ``[...]``.
        case: ``CASE_ALL_POSITIVE`` / ``CASE_ALL_NEGATIVE`` / ``CASE_STRADDLE`` per row, shape ``[...]``.
    """

    combined: np.ndarray
    weights: np.ndarray
    effective: np.ndarray
    index_low: np.ndarray
    index_high: np.ndarray
    case: np.ndarray


def pama_combine(
    advantages: np.ndarray | Any,
    *,
    noon: bool = False,
    ratios: np.ndarray | Any | None = None,
    clip_eps: float = 0.2,
) -> PamaResult:
    """Combine per-objective advantages with PAMA's Theorem 1, vectorised over all leading axes.

    Args:
        advantages: ``[..., n]`` per-objective advantages ``A^(i)`` (n objectives in the last axis);
            a nested list or an array.
        noon: apply Noon PPO's clip ``max(A, 0)`` first (the paper's setting). Off by default because
            the algorithms reference recommends trainers clip before calling; pass True to do it here.
        ratios: optional PPO ratios ``u`` of shape ``[...]`` (one per leading element, shared by all
            objectives). When given, ``a_i = A_i · 1{u ≤ 1 + clip_eps}``. Which policy is the ratio's
            denominator (rollout or reference) is the trainer's choice: the paper writes ``θ_ref``,
            standard PPO and TRL use the rollout policy.
        clip_eps: PPO's ε, used only with ``ratios``.

    Returns:
        A `PamaResult`; ``combined`` has the leading shape and ``weights`` the input shape.

    Raises:
        ObjectiveInputError: ragged/non-finite input (the message names the index), a ratio shape that
            does not match the leading axes, a negative ratio, or a bad ``clip_eps``.
    """
    a = validate_nested(advantages, "advantages", min_ndim=1)
    if ratios is not None:
        keep = _ratio_keep_mask(a, ratios, clip_eps)
        a = np.where(keep[..., None], a, 0.0)  # a fresh array: the caller's input is never modified
        if noon:
            np.maximum(a, 0.0, out=a)
    elif noon:
        a = np.maximum(a, 0.0)

    index_low = np.argmin(a, axis=-1)
    index_high = np.argmax(a, axis=-1)
    low = np.take_along_axis(a, index_low[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(a, index_high[..., None], axis=-1)[..., 0]
    combined = np.minimum(np.maximum(0.0, low), high)  # projection of 0 onto [low, high]

    all_positive = low > 0
    all_negative = high < 0
    straddle = ~(all_positive | all_negative)
    is_zero = a == 0
    index_zero = np.argmax(is_zero, axis=-1)  # first zero (lowest index); 0 when the row has none
    has_zero = np.take_along_axis(is_zero, index_zero[..., None], axis=-1)[..., 0]

    # Straddling rows without a zero mix the min objective j and the max objective k so that
    # c_j·low + c_k·high = 0. Scaling by max(|low|, |high|) first keeps high - low from overflowing.
    mixing = straddle & ~has_zero
    scale = np.where(mixing, np.maximum(-low, high), 1.0)
    low_s, high_s = low / scale, high / scale
    weight_low = np.where(mixing, high_s / np.where(mixing, high_s - low_s, 1.0), 1.0)

    # Every row has at most two non-zero weights: `first` gets weight_low (1 for one-hot rows) and, in
    # mixing rows, index_high gets the rest. Scatter index_high first so a one-hot `first` that equals
    # index_high overwrites its zero.
    first = np.where(all_negative, index_high, np.where(all_positive | mixing, index_low, index_zero))
    weights = np.zeros_like(a)
    np.put_along_axis(weights, index_high[..., None], np.where(mixing, 1.0 - weight_low, 0.0)[..., None], -1)
    np.put_along_axis(weights, first[..., None], weight_low[..., None], -1)

    case = np.where(all_positive, CASE_ALL_POSITIVE, np.where(all_negative, CASE_ALL_NEGATIVE, CASE_STRADDLE))
    return PamaResult(
        combined=combined,
        weights=weights,
        effective=a,
        index_low=index_low,
        index_high=index_high,
        case=case.astype(np.int8),
    )


def _ratio_keep_mask(a: np.ndarray, ratios: np.ndarray | Any, clip_eps: float) -> np.ndarray:
    """``1{u ≤ 1 + ε}`` per leading element: False where the ratio is clipped and the row is zeroed."""
    if not isinstance(clip_eps, int | float) or isinstance(clip_eps, bool) or not math.isfinite(clip_eps):
        raise ObjectiveInputError(f"clip_eps must be a finite number (got {clip_eps!r}); PPO uses 0.2")
    if clip_eps < 0:
        raise ObjectiveInputError(f"clip_eps must be >= 0 (got {clip_eps}); PPO uses 0.2")
    u = validate_nested(ratios, "ratios", min_ndim=0)
    if u.shape != a.shape[:-1]:
        raise ObjectiveInputError(
            f"ratios has shape {list(u.shape)} but advantages has shape {list(a.shape)}; give one ratio "
            f"per leading element, i.e. shape {list(a.shape[:-1])} (the ratio is shared by all objectives)"
        )
    if (u < 0).any():
        bad = tuple(np.argwhere(u < 0)[0])
        where = index_path("ratios", bad)
        raise ObjectiveInputError(
            f"{where} is {float(u[bad])}; a policy ratio is >= 0 — "
            f"pass exp(logp - logp_old), not the log-ratio"
        )
    return u <= 1.0 + clip_eps
