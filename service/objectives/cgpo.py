"""CGPO's calibrated reward and the bookkeeping that keeps its baseline cost at one forward per prompt.

CGPO (Xu et al., arXiv 2409.20370 §6.2) calibrates a raw reward against a per-prompt baseline response
``ā``: ``R_calib(s, a) = σ(r(s, a) − r(s, ā))`` — bounded in (0, 1), comparable across prompts, and
readable as Pr(a ≻ ā). A GRPO-style batch has many responses per prompt but one baseline per prompt, so
`plan_baselines` deduplicates (prompt, baseline) pairs: the scorer runs one extra forward per distinct
pair, not per response, and scatters the baseline reward back with ``index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.objectives.validation import ObjectiveInputError, validate_nested

__all__ = ["BaselinePlan", "calibrated_reward", "plan_baselines", "stable_sigmoid"]


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) without overflow: ``exp`` only ever sees non-positive arguments."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def calibrated_reward(reward: Any, baseline_reward: Any) -> np.ndarray | float:
    """``σ(r − r_baseline)``, elementwise with numpy broadcasting; a float for scalar inputs.

    Raises:
        ObjectiveInputError: non-finite or ragged input (naming the index), or shapes that do not
            broadcast.
    """
    r = validate_nested(reward, "reward", min_ndim=0)
    b = validate_nested(baseline_reward, "baseline_reward", min_ndim=0)
    try:
        difference = r - b
    except ValueError:
        raise ObjectiveInputError(
            f"reward shape {list(r.shape)} and baseline_reward shape {list(b.shape)} do not broadcast; give "
            f"one baseline reward per reward, or one per group"
        ) from None
    result = stable_sigmoid(difference)
    return float(result) if result.ndim == 0 else result


@dataclass(frozen=True, slots=True)
class BaselinePlan:
    """Distinct (prompt, baseline) pairs to score once, and where each item's baseline reward comes from.

    Attributes:
        pairs: the distinct ``(prompt, baseline_response)`` pairs, in first-seen order.
        index: for each item, the position in ``pairs`` of its baseline, or None when it has none.
    """

    pairs: tuple[tuple[str, str], ...]
    index: tuple[int | None, ...]

    def scatter(self, baseline_rewards: Sequence[float]) -> list[float | None]:
        """Map the rewards of ``pairs`` (same order) back to one baseline reward (or None) per item."""
        if len(baseline_rewards) != len(self.pairs):
            raise ObjectiveInputError(
                f"got {len(baseline_rewards)} baseline rewards for {len(self.pairs)} baseline pairs"
            )
        return [None if i is None else float(baseline_rewards[i]) for i in self.index]


def plan_baselines(prompts: Sequence[str], baselines: Sequence[str | None]) -> BaselinePlan:
    """Deduplicate per-item baselines so each distinct (prompt, baseline) is scored exactly once.

    ``baselines`` is aligned with ``prompts``; a per-group baseline is simply repeated by the caller for
    every item of its group, and dedup turns it back into a single forward.
    """
    if len(prompts) != len(baselines):
        raise ObjectiveInputError(
            f"got {len(prompts)} prompts but {len(baselines)} baselines; give one baseline (or null) per item"
        )
    position: dict[tuple[str, str], int] = {}
    index: list[int | None] = []
    for prompt, baseline in zip(prompts, baselines, strict=True):
        if baseline is None:
            index.append(None)
            continue
        key = (prompt, baseline)
        index.append(position.setdefault(key, len(position)))
    return BaselinePlan(pairs=tuple(position), index=tuple(index))
