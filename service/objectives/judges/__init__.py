"""CGPO's mixture of judges: rule-based constraints with JSON-schema arguments and one registry.

`default_registry()` holds every built-in judge (instruction following, math, text, refusal, reward
thresholds); `evaluate_judges` runs a list of ``{"name", "args"}`` specs and ANDs them. Nothing here
imports torch or talks HTTP.
"""

from __future__ import annotations

from functools import cache

from service.objectives.judges import instructions, math, refusal, reward, text
from service.objectives.judges.base import (
    Judge,
    JudgeContext,
    JudgeRegistry,
    JudgeSpecError,
    JudgeVerdict,
)
from service.objectives.judges.evaluate import JudgeReport, JudgeResult, evaluate_judges, resolve_specs

__all__ = [
    "Judge",
    "JudgeContext",
    "JudgeRegistry",
    "JudgeReport",
    "JudgeResult",
    "JudgeSpecError",
    "JudgeVerdict",
    "default_registry",
    "evaluate_judges",
    "get_judge",
    "list_judges",
    "resolve_specs",
]


@cache
def default_registry() -> JudgeRegistry:
    """The built-in judges, built once on first use (judges are immutable, so sharing is safe)."""
    return JudgeRegistry((*instructions.JUDGES, *math.JUDGES, *text.JUDGES, *refusal.JUDGES, *reward.JUDGES))


def get_judge(name: str) -> Judge:
    """A built-in judge by name; unknown names raise `JudgeSpecError` listing the valid ones."""
    return default_registry().get(name)


def list_judges() -> list[Judge]:
    """Every built-in judge, sorted by name."""
    return list(default_registry())
