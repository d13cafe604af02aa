"""Run a list of judge specs on one (prompt, response) and AND the verdicts, as CGPO labels samples.

A spec is ``{"name": ..., "args": {...}}`` (or any object with ``name`` and ``args`` attributes, such as
the service's pydantic model). Every spec is validated before any judge runs, so a typo in the last
spec fails fast with a 422 instead of after work is done. The AND of an empty list is True: a sample
with no constraints is feasible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.objectives.judges.base import Judge, JudgeContext, JudgeRegistry, JudgeSpecError

__all__ = ["JudgeReport", "JudgeResult", "evaluate_judges", "resolve_specs"]


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """One judge's verdict with the (default-filled) arguments it ran with."""

    name: str
    args: dict[str, Any]
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class JudgeReport:
    """All verdicts for one item and their AND (CGPO: positive iff every judge is satisfied)."""

    results: tuple[JudgeResult, ...]
    all_passed: bool


def resolve_specs(specs: Sequence[Any], registry: JudgeRegistry) -> list[tuple[Judge, dict[str, Any]]]:
    """Look up and validate every spec; the first problem raises `JudgeSpecError` naming ``judges[i]``."""
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Sequence):
        raise JudgeSpecError('judges must be a list of {"name": ..., "args": {...}} objects')
    resolved = []
    for i, spec in enumerate(specs):
        name, args = _unpack(spec, i)
        try:
            judge = registry.get(name)
            resolved.append((judge, judge.validate(args)))
        except JudgeSpecError as error:
            raise JudgeSpecError(f"judges[{i}]: {error}") from None
    return resolved


def evaluate_judges(
    prompt: str,
    response: str,
    specs: Sequence[Any],
    context: JudgeContext | None = None,
    registry: JudgeRegistry | None = None,
) -> JudgeReport:
    """Validate all specs, run each judge, and return the per-judge results and their AND.

    Raises:
        JudgeSpecError: unknown judge (lists the valid ones), bad args (names the problem), or a judge
            that needs context it did not get (reward thresholds, token lengths).
    """
    if registry is None:
        from service.objectives.judges import default_registry  # the package imports this module

        registry = default_registry()
    context = context or JudgeContext()
    results = []
    for i, (judge, args) in enumerate(resolve_specs(specs, registry)):
        try:
            verdict = judge.check_fn(prompt, response, args, context)
        except JudgeSpecError as error:
            raise JudgeSpecError(f"judges[{i}]: {error}") from None
        results.append(JudgeResult(judge.name, args, verdict.passed, verdict.reason))
    return JudgeReport(tuple(results), all(r.passed for r in results))


def _unpack(spec: Any, i: int) -> tuple[str, Any]:
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"name", "args"})
        if "name" not in spec or unknown:
            raise JudgeSpecError(
                f'judges[{i}] must be {{"name": ..., "args": {{...}}}}'
                + (f"; unknown keys {unknown}" if unknown else "; 'name' is missing")
            )
        return spec["name"], spec.get("args")
    if hasattr(spec, "name"):
        return spec.name, getattr(spec, "args", None)
    raise JudgeSpecError(f'judges[{i}] is a {type(spec).__name__}; expected {{"name": ..., "args": {{...}}}}')
