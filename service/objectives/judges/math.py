"""Math final-answer judge: extract the response's final answer and compare it with the reference.

CGPO's math judge is "rule-based final-answer match with a required answer format" [paper]; the format
is not specified, so extraction is a named option:

- ``"boxed"``: the last ``\\boxed{...}`` (or ``\\fbox{...}``) — a missing box fails the judge, which is
  how a required format is enforced;
- ``"gsm8k"``: the text after the last ``####`` marker;
- ``"last_number"``: the last number in the text;
- ``"auto"`` (default): boxed, else ``####``, else the last number.

Answers compare numerically when both sides parse as numbers (integers, decimals, ``1,234``
thousands separators, ``a/b`` and ``\\frac{a}{b}`` fractions, a trailing ``%`` read as the number
itself, ``$`` signs dropped), within ``abs_tol + rel_tol·|reference|``. Otherwise they compare as
normalised strings (spaces, ``\\left``/``\\right``, ``\\text{}``, dollar signs and a trailing period
removed; case-insensitive).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from service.objectives.judges.base import Judge, JudgeContext, JudgeVerdict

__all__ = [
    "JUDGES",
    "extract_answer",
    "extract_boxed",
    "extract_last_number",
    "parse_number",
    "answers_match",
]

_NUMBER = re.compile(
    r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*-?\d+(?:\.\d+)?)?|-?\.\d+"
)
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")
_FRAC_SHORT = re.compile(r"^(-?)\\[dt]?frac(\d)(\d)$")
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def extract_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}``/``\\fbox{...}`` with balanced braces, or ``\\boxed 5``."""
    start = max(text.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
    rest = text[start + len(command) :]
    if rest.startswith(" "):  # "\boxed 5": the argument is the next token
        token = rest.split()
        return token[0].rstrip("$.") if token else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:i].strip()
    return None  # unbalanced braces: no well-formed answer


def extract_last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text)
    return matches[-1].strip() if matches else None


def extract_answer(text: str, mode: str = "auto") -> str | None:
    """The final answer according to ``mode`` (see the module docstring), or None if absent."""
    if mode == "boxed":
        return extract_boxed(text)
    if mode == "last_number":
        return extract_last_number(text)
    marked = text.rsplit("####", 1)[1].strip() if "####" in text else None
    if mode == "gsm8k":
        return marked or None
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if marked:
        return extract_last_number(marked) or marked
    return extract_last_number(text)


def parse_number(text: str) -> float | None:
    """A float for numeric answers ("1,234", "-3/4", "\\frac{1}{2}", "50%", "$12.50"), else None."""
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\[!,;: ]|\\left|\\right|\\\$|\s+", "", s)
    s = re.sub(r"\\%|%$", "", s).rstrip(".")
    s = re.sub(r"\^\{?\\circ\}?$", "", s)
    if not s:
        return None
    for pattern in (_FRAC, _FRAC_SHORT):
        fraction = pattern.match(s)
        if fraction:
            sign, numerator, denominator = fraction.groups()
            value = _ratio(parse_number(numerator), parse_number(denominator))
            return None if value is None else (-value if sign else value)
    if "/" in s:
        numerator, _, denominator = s.partition("/")
        return _ratio(parse_number(numerator), parse_number(denominator))
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    try:
        value = float(s)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def answers_match(answer: str, reference: str, abs_tol: float = 1e-6, rel_tol: float = 0.0) -> bool:
    """Numeric match within tolerance when both parse, else normalised string equality."""
    x, y = parse_number(answer), parse_number(reference)
    if x is not None and y is not None:
        return abs(x - y) <= abs_tol + rel_tol * abs(y)
    return _normalise(answer) == _normalise(reference)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _normalise(text: str) -> str:
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    s = re.sub(r"\\left|\\right|\$|\s+", "", s)
    return s.rstrip(".").lower()


def _check_math(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    reference = str(args["answer"])
    found = extract_answer(response, args["extract"])
    if found is None:
        how = {
            "boxed": "no \\boxed{...} answer",
            "gsm8k": "no '#### answer' line",
            "last_number": "no number",
        }.get(args["extract"], "no final answer (no \\boxed{}, '####' or number)")
        return JudgeVerdict(False, f"{how} found in the response")
    if answers_match(found, reference, args["abs_tol"], args["rel_tol"]):
        return JudgeVerdict(True, f"final answer {found!r} matches the reference {reference!r}")
    return JudgeVerdict(False, f"final answer {found!r} does not match the reference {reference!r}")


JUDGES: tuple[Judge, ...] = (
    Judge(
        "math_answer",
        "The response's final answer (\\boxed{}, '####' or last number) matches `answer` within tolerance.",
        {
            "type": "object",
            "properties": {
                "answer": {"type": ["string", "number"], "description": "reference final answer"},
                "extract": {
                    "type": "string",
                    "enum": ["auto", "boxed", "gsm8k", "last_number"],
                    "default": "auto",
                },
                "abs_tol": {"type": "number", "minimum": 0, "default": 1e-6},
                "rel_tol": {"type": "number", "minimum": 0, "default": 0.0},
            },
            "required": ["answer"],
            "additionalProperties": False,
        },
        _check_math,
        category="math",
    ),
)
