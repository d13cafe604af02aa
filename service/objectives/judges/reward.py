"""Reward-threshold judge: a constraint on one output of the served reward model.

CGPO uses reward models as well as rules; the simplest model-based constraint is "objective k is at
least t" (e.g. a safety head). The judge never runs the model: the service scores the item and puts the
outputs in `JudgeContext.rewards` (objective names plus ``"score"`` for the gated score), so the judge
stays a pure function and the same spec works offline with precomputed rewards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from service.objectives.judges.base import Judge, JudgeContext, JudgeSpecError, JudgeVerdict

__all__ = ["JUDGES"]


def _problems(args: Mapping[str, Any]) -> list[str]:
    if "min" not in args and "max" not in args:
        return ["give at least one of 'min' or 'max'"]
    if "min" in args and "max" in args and args["min"] > args["max"]:
        return [f"'min' ({args['min']}) is greater than 'max' ({args['max']})"]
    if any(not math.isfinite(args[key]) for key in ("min", "max") if key in args):
        return ["'min' and 'max' must be finite numbers"]
    return []


def _check_reward(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    objective = args["objective"]
    if ctx.rewards is None:
        raise JudgeSpecError(
            "judge 'reward_threshold' needs the served model's rewards; call it through the service "
            "(which scores the item) or pass context.rewards"
        )
    if objective not in ctx.rewards:
        raise JudgeSpecError(
            f"judge 'reward_threshold': unknown objective {objective!r}; "
            f"valid objectives: {sorted(ctx.rewards)}"
        )
    value = float(ctx.rewards[objective])
    low, high = args.get("min"), args.get("max")
    if low is not None and value < low:
        return JudgeVerdict(False, f"{objective} = {value:.4g}, below the threshold {low}")
    if high is not None and value > high:
        return JudgeVerdict(False, f"{objective} = {value:.4g}, above the ceiling {high}")
    return JudgeVerdict(True, f"{objective} = {value:.4g}, within the thresholds")


JUDGES: tuple[Judge, ...] = (
    Judge(
        "reward_threshold",
        "One served-model output (an objective name, or 'score') lies within [min, max] (inclusive).",
        {
            "type": "object",
            "properties": {
                "objective": {"type": "string", "minLength": 1},
                "min": {"type": "number"},
                "max": {"type": "number"},
            },
            "required": ["objective"],
            "additionalProperties": False,
        },
        _check_reward,
        _problems,
        category="reward",
    ),
)
