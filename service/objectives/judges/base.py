"""What a judge is, how its arguments are checked, and the registry that names them.

CGPO's mixture of judges (Xu et al., arXiv 2409.20370) labels each (prompt, response) satisfied or
violated; a sample is positive only if every judge it is given passes. Here a judge is a plain record —
name, description, JSON schema of its arguments, and a pure check function — so judges can be listed
over HTTP, validated before any work is done, and tested without a server.

Judges that need the served model (reward thresholds) or a tokenizer (token lengths) read those from a
`JudgeContext` that the service fills in; the judges themselves never call a model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.objectives.judges.schema import check_schema_keywords, validate_args
from service.objectives.validation import ObjectiveInputError

__all__ = [
    "CheckFn",
    "Judge",
    "JudgeContext",
    "JudgeRegistry",
    "JudgeSpecError",
    "JudgeVerdict",
    "bounds_problems",
    "bounds_properties",
    "bounds_verdict",
]


class JudgeSpecError(ObjectiveInputError):
    """An unknown judge, bad judge arguments, or missing context; the message lists what is valid."""


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """One judge's decision: ``passed`` (the constraint is satisfied) and a reason a human can act on."""

    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class JudgeContext:
    """What the service knows about a (prompt, response) beyond its text.

    Attributes:
        rewards: the served model's outputs by objective name (plus ``"score"`` for the gated score when
            the service provides it), for reward-threshold judges.
        token_count: the response length in tokens under the tokenizer the caller cares about.
    """

    rewards: Mapping[str, float] | None = None
    token_count: int | None = None


CheckFn = Callable[[str, str, Mapping[str, Any], JudgeContext], JudgeVerdict]
ValidateFn = Callable[[Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Judge:
    """A named, rule-based constraint with a JSON schema for its arguments.

    ``validate_fn`` covers what the schema subset cannot say (e.g. "give min or max, min <= max", or "the
    regex compiles"); it only runs once the schema passes, so it may assume the declared types.
    """

    name: str
    description: str
    args_schema: Mapping[str, Any]
    check_fn: CheckFn = field(repr=False)
    validate_fn: ValidateFn | None = field(default=None, repr=False)
    category: str = "general"

    def __post_init__(self) -> None:
        check_schema_keywords(self.args_schema, f"judge {self.name!r} args_schema")

    def validate(self, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check ``args`` against the schema and return them with schema defaults filled in.

        Raises:
            JudgeSpecError: naming the judge, every problem, and the schema's properties.
        """
        given: Any = {} if args is None else args
        problems = validate_args(given, self.args_schema)
        if not problems and self.validate_fn is not None:
            problems = self.validate_fn(given)
        if problems:
            properties = sorted(self.args_schema.get("properties", {}))
            raise JudgeSpecError(
                f"judge {self.name!r} got bad args: {'; '.join(problems)}. "
                f"Its args are {properties} (required: {list(self.args_schema.get('required', []))})"
            )
        filled = dict(given)
        for name, sub in self.args_schema.get("properties", {}).items():
            if name not in filled and "default" in sub:
                filled[name] = copy.deepcopy(sub["default"])
        return filled

    def check(
        self,
        prompt: str,
        response: str,
        args: Mapping[str, Any] | None = None,
        context: JudgeContext | None = None,
    ) -> JudgeVerdict:
        """Validate ``args`` then judge ``response`` to ``prompt``."""
        return self.check_fn(prompt, response, self.validate(args), context or JudgeContext())

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for listing endpoints."""
        return {
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "args_schema": copy.deepcopy(dict(self.args_schema)),
        }


class JudgeRegistry:
    """Judges by name. Lookups of unknown names raise `JudgeSpecError` listing the valid names."""

    def __init__(self, judges: Iterable[Judge] = ()) -> None:
        self._judges: dict[str, Judge] = {}
        for judge in judges:
            self.register(judge)

    def register(self, judge: Judge) -> Judge:
        if judge.name in self._judges:
            raise ValueError(f"a judge named {judge.name!r} is already registered; pick another name")
        self._judges[judge.name] = judge
        return judge

    def get(self, name: str) -> Judge:
        try:
            return self._judges[name]
        except (KeyError, TypeError):
            raise JudgeSpecError(f"unknown judge {name!r}; valid judges: {self.names()}") from None

    def names(self) -> list[str]:
        return sorted(self._judges)

    def __contains__(self, name: object) -> bool:
        return name in self._judges

    def __iter__(self) -> Iterator[Judge]:
        return iter(self._judges[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._judges)


# --- shared helpers for count judges (words, sentences, bullets, characters ...) -------------------------


def bounds_properties(unit: str) -> dict[str, Any]:
    """Schema properties ``min`` / ``max`` (inclusive) for a count of ``unit``."""
    return {
        "min": {"type": "integer", "minimum": 0, "description": f"at least this many {unit} (inclusive)"},
        "max": {"type": "integer", "minimum": 0, "description": f"at most this many {unit} (inclusive)"},
    }


def bounds_problems(args: Mapping[str, Any]) -> list[str]:
    """Semantic check for `bounds_properties`: at least one bound, and ``min <= max``."""
    if "min" not in args and "max" not in args:
        return ["give at least one of 'min' or 'max'"]
    if "min" in args and "max" in args and args["min"] > args["max"]:
        return [f"'min' ({args['min']}) is greater than 'max' ({args['max']})"]
    return []


def bounds_verdict(count: int, args: Mapping[str, Any], unit: str) -> JudgeVerdict:
    """Pass iff ``min <= count <= max`` for the bounds present, with a reason quoting both."""
    low, high = args.get("min"), args.get("max")
    if low is not None and count < low:
        return JudgeVerdict(False, f"{count} {unit}, fewer than the required minimum of {low}")
    if high is not None and count > high:
        return JudgeVerdict(False, f"{count} {unit}, more than the allowed maximum of {high}")
    wanted = " and ".join(
        part
        for part in (
            f"at least {low}" if low is not None else "",
            f"at most {high}" if high is not None else "",
        )
        if part
    )
    return JudgeVerdict(True, f"{count} {unit}, within the bounds ({wanted})")
