"""Generic text judges: a regular expression and a length bound in characters, words or tokens.

User patterns run on the `regex` engine (re's syntax) with a time limit per response, so a pattern that
backtracks catastrophically on one policy output fails that judge with a reason instead of stalling or
failing the whole request.

Token counts depend on a tokenizer the judge does not have, so ``unit: "tokens"`` reads
`JudgeContext.token_count` (filled in by the service from the policy tokenizer, or by a caller who
already knows it); without it the judge refuses with an error rather than guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import regex as re  # the `regex` engine: re's syntax, far less backtracking, and a per-match timeout

from service.objectives.judges.base import (
    Judge,
    JudgeContext,
    JudgeSpecError,
    JudgeVerdict,
    bounds_problems,
    bounds_properties,
    bounds_verdict,
)
from service.objectives.judges.instructions import count_words

__all__ = ["JUDGES"]

_FLAGS = {"IGNORECASE": re.IGNORECASE, "MULTILINE": re.MULTILINE, "DOTALL": re.DOTALL}
REGEX_TIMEOUT_S = 0.5
"""Most time one user pattern may spend on one response; past it the judge fails with a reason, and the
rest of the request is judged (the worker's per-request budget is the backstop for everything else)."""


def _compile(args: Mapping[str, Any]) -> re.Pattern[str]:
    flags = 0
    for name in args.get("flags", []):
        flags |= _FLAGS[name]
    return re.compile(args["pattern"], flags)


def _regex_problems(args: Mapping[str, Any]) -> list[str]:
    try:
        _compile(args)
    except re.error as error:
        return [f"args.pattern does not compile: {error}"]
    return []


def _check_regex(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    pattern = _compile(args)
    mode = args["mode"]
    try:
        if mode == "fullmatch":
            ok = pattern.fullmatch(response, timeout=REGEX_TIMEOUT_S) is not None
            return JudgeVerdict(
                ok, f"the whole response {'matches' if ok else 'does not match'} /{pattern.pattern}/"
            )
        found = pattern.search(response, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return JudgeVerdict(
            False, f"/{pattern.pattern}/ did not finish within {REGEX_TIMEOUT_S} s on this response (catastrophic "
            "backtracking?); the judge fails it. Rewrite the pattern without nested or overlapping repeats"
        )
    if mode == "search":
        if found:
            return JudgeVerdict(
                True, f"matches /{pattern.pattern}/ at {found.start()}: {found.group(0)!r:.60}"
            )
        return JudgeVerdict(False, f"no match for /{pattern.pattern}/")
    if found:  # mode == "absent"
        return JudgeVerdict(
            False, f"forbidden pattern /{pattern.pattern}/ found at {found.start()}: {found.group(0)!r:.60}"
        )
    return JudgeVerdict(True, f"no match for the forbidden pattern /{pattern.pattern}/")


def _check_length(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    unit = args["unit"]
    if unit == "chars":
        count = len(response)
    elif unit == "words":
        count = count_words(response)
    else:
        if ctx.token_count is None:
            raise JudgeSpecError(
                "judge 'length' with unit 'tokens' needs the response's token count; the service fills it in "
                "when it tokenizes the response — otherwise use unit 'chars' or 'words'"
            )
        count = ctx.token_count
    return bounds_verdict(count, args, {"chars": "characters"}.get(unit, unit))


JUDGES: tuple[Judge, ...] = (
    Judge(
        "regex",
        "A regular expression must be found ('search'), match the whole response ('fullmatch'), "
        "or be absent ('absent').",
        {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "minLength": 1},
                "mode": {"type": "string", "enum": ["search", "fullmatch", "absent"], "default": "search"},
                "flags": {
                    "type": "array",
                    "items": {"type": "string", "enum": sorted(_FLAGS)},
                    "default": [],
                },
            },
            "required": ["pattern"],
            "additionalProperties": False,
        },
        _check_regex,
        _regex_problems,
        category="text",
    ),
    Judge(
        "length",
        "Response length in characters, words or tokens (tokens need the service's count) within bounds.",
        {
            "type": "object",
            "properties": {
                "unit": {"type": "string", "enum": ["chars", "words", "tokens"], "default": "chars"},
                **bounds_properties("units"),
            },
            "additionalProperties": False,
        },
        _check_length,
        bounds_problems,
        category="text",
    ),
)
