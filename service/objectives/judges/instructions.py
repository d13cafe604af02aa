"""IFEval-style instruction-following verifiers (Zhou et al., 2023), as CGPO and MAPL use them.

Each verifier checks one verifiable instruction ("answer in at most 50 words", "wrap your title in
<< >>", ...). Counting rules are deliberately simple and documented, because MAPL's generators rely on
them to build prompts a response provably does or does not satisfy:

- word: a run of letters/digits/underscores, optionally joined by ``-`` or an apostrophe (``don't``);
- sentence: a stretch of text containing a word and ending in ``.``, ``!``, ``?`` or the end of text
  (a heuristic — "e.g." splits a sentence, as in most rule-based checkers);
- paragraph: text separated by blank lines, or by ``***`` lines when ``separator`` is
  ``"markdown_divider"`` (IFEval's form);
- bullet: a line starting with ``*``, ``-`` or ``+`` followed by a space;
- keyword matches are case-insensitive substrings by default (IFEval), or whole words with
  ``match: "word"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from service.objectives.judges.base import (
    Judge,
    JudgeContext,
    JudgeVerdict,
    bounds_problems,
    bounds_properties,
    bounds_verdict,
)

__all__ = [
    "JUDGES",
    "count_bullets",
    "count_highlights",
    "count_paragraphs",
    "count_placeholders",
    "count_sentences",
    "count_words",
    "split_words",
]

_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
# Linear on hostile text: a match starts only at the start of a run of ".!?" and never backtracks into
# it (plain `[.!?]+(?=\s|$)` retried every position of a run: 4.6 s for 20 000 "!" then a letter).
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++(?=\s|$)")
_BULLET = re.compile(r"^[ \t]*[*+-][ \t]+\S", re.MULTILINE)
_HIGHLIGHT = re.compile(r"\*[^\n*]+\*")
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_TITLE = re.compile(r"<<[^\n<>]+>>")
_FENCE = re.compile(r"^```(?:json|JSON)?\s*\n?(.*?)\n?```$", re.DOTALL)
_TWO_RESPONSES_SEPARATOR = "******"


def split_words(text: str) -> list[str]:
    return _WORD.findall(text)


def count_words(text: str) -> int:
    return len(split_words(text))


def count_sentences(text: str) -> int:
    pieces = _SENTENCE_END.split(text)
    return sum(1 for piece in pieces if _WORD.search(piece))


def count_paragraphs(text: str, separator: str = "blank_line") -> int:
    pattern = r"\n[ \t]*\n" if separator == "blank_line" else r"^[^\S\n]*\*\*\*[^\S\n]*$"
    parts = re.split(pattern, text.strip(), flags=re.MULTILINE)
    return sum(1 for part in parts if part.strip())


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def count_highlights(text: str) -> int:
    return len(_HIGHLIGHT.findall(text))


def count_placeholders(text: str) -> int:
    return len(_PLACEHOLDER.findall(text))


def _bounded(
    name: str, unit: str, counter: Any, description: str, extra: dict[str, Any] | None = None
) -> Judge:
    """A judge passing when ``counter(response, args)`` lies within inclusive ``min``/``max`` bounds."""

    def check(prompt: str, response: str, args: Mapping[str, Any], context: JudgeContext) -> JudgeVerdict:
        return bounds_verdict(counter(response, args), args, unit)

    schema = {
        "type": "object",
        "properties": {**(extra or {}), **bounds_properties(unit)},
        "required": [key for key in (extra or {}) if "default" not in (extra or {})[key]],
        "additionalProperties": False,
    }
    return Judge(name, description, schema, check, bounds_problems, category="instruction")


def _keyword_hits(text: str, keyword: str, args: Mapping[str, Any]) -> int:
    flags = 0 if args["case_sensitive"] else re.IGNORECASE
    escaped = re.escape(keyword)
    pattern = rf"(?<!\w){escaped}(?!\w)" if args["match"] == "word" else escaped
    return len(re.findall(pattern, text, flags))


_KEYWORD_OPTIONS: dict[str, Any] = {
    "case_sensitive": {"type": "boolean", "default": False},
    "match": {"type": "string", "enum": ["substring", "word"], "default": "substring"},
}
_KEYWORD_LIST = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}


def _check_keywords_include(
    prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext
) -> JudgeVerdict:
    missing = [k for k in args["keywords"] if _keyword_hits(response, k, args) == 0]
    if missing:
        return JudgeVerdict(False, f"missing required keyword(s) {missing}")
    return JudgeVerdict(True, f"contains every required keyword {list(args['keywords'])}")


def _check_keywords_exclude(
    prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext
) -> JudgeVerdict:
    present = [k for k in args["keywords"] if _keyword_hits(response, k, args) > 0]
    if present:
        return JudgeVerdict(False, f"contains forbidden keyword(s) {present}")
    return JudgeVerdict(True, f"contains none of the forbidden keywords {list(args['keywords'])}")


def _check_json(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    text = response.strip()
    fenced = _FENCE.match(text)
    if fenced and args["allow_code_fence"]:
        text = fenced.group(1).strip()
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return JudgeVerdict(False, f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}")
    except RecursionError:  # valid by the grammar, but no parser a consumer uses reads it
        return JudgeVerdict(False, "JSON nested too deep to parse (past the parser's recursion limit)")
    except ValueError as error:  # e.g. an integer literal beyond Python's 4300-digit limit
        return JudgeVerdict(False, f"JSON that cannot be read: {error}")
    return JudgeVerdict(True, "the whole response is valid JSON")


def _check_no_commas(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    commas = response.count(",")
    if commas:
        return JudgeVerdict(False, f"contains {commas} comma(s)")
    return JudgeVerdict(True, "contains no commas")


def _check_case(upper: bool) -> Any:
    def check(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
        converted = response.upper() if upper else response.lower()
        wanted = "uppercase" if upper else "lowercase"
        if response != converted:
            offending = next(c for c, d in zip(response, converted, strict=False) if c != d)
            return JudgeVerdict(False, f"not all {wanted}: found {offending!r}")
        if not any(c.isalpha() for c in response):
            return JudgeVerdict(False, f"has no letters, so it is not written in {wanted}")
        return JudgeVerdict(True, f"all letters are {wanted}")

    return check


def _affix(ends: bool) -> Any:
    def check(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
        text, phrase = response.strip(), args["phrase"].strip()
        if not args["case_sensitive"]:
            text, phrase = text.lower(), phrase.lower()
        ok = text.endswith(phrase) if ends else text.startswith(phrase)
        where = "ends" if ends else "starts"
        if ok:
            return JudgeVerdict(True, f"{where} with {args['phrase']!r}")
        edge = response.strip()[-len(phrase) :] if ends else response.strip()[: len(phrase)]
        return JudgeVerdict(False, f"{where} with {edge!r}, not {args['phrase']!r}")

    return check


def _affix_judge(ends: bool) -> Judge:
    """`ends_with` / `starts_with`: the response ends (starts) with an exact phrase."""
    where = "ends" if ends else "starts"
    return Judge(
        f"{where}_with",
        f"The response {where} with an exact phrase (whitespace-trimmed).",
        {
            "type": "object",
            "properties": {
                "phrase": {"type": "string", "minLength": 1},
                "case_sensitive": {"type": "boolean", "default": False},
            },
            "required": ["phrase"],
            "additionalProperties": False,
        },
        _affix(ends=ends),
        category="instruction",
    )


def _check_title(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    match = _TITLE.search(response)
    if match:
        return JudgeVerdict(True, f"has a title {match.group(0)}")
    return JudgeVerdict(False, "no title wrapped in double angular brackets, like <<my title>>")


def _check_quotation(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    text = response.strip()
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return JudgeVerdict(True, "the whole response is wrapped in double quotation marks")
    return JudgeVerdict(False, "the response is not wrapped in double quotation marks")


def _check_two_responses(
    prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext
) -> JudgeVerdict:
    parts = [part.strip() for part in response.split(_TWO_RESPONSES_SEPARATOR)]
    if len(parts) != 2:
        return JudgeVerdict(
            False,
            f"expected two responses separated by {_TWO_RESPONSES_SEPARATOR}, found {len(parts)} part(s)",
        )
    if not parts[0] or not parts[1]:
        return JudgeVerdict(False, "one of the two responses is empty")
    if parts[0] == parts[1]:
        return JudgeVerdict(False, "the two responses are identical")
    return JudgeVerdict(True, f"two different responses separated by {_TWO_RESPONSES_SEPARATOR}")


def _check_repeat_prompt(
    prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext
) -> JudgeVerdict:
    target = (args.get("prompt_to_repeat") or prompt).strip()
    if response.strip().lower().startswith(target.lower()):
        return JudgeVerdict(True, "starts by repeating the request word for word")
    return JudgeVerdict(False, "does not start by repeating the request word for word")


def _check_postscript(prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext) -> JudgeVerdict:
    marker = args["marker"]
    # `[^\S\n]*`, not `\s*`: after `^` the line's own indentation is enough, and `\s*` across newlines
    # made every line start rescan the rest of a blank-line flood (3.7 s for 20 000 newlines).
    pattern = rf"(?im)^[^\S\n]*{re.escape(marker)}"
    if re.search(pattern, response):
        return JudgeVerdict(True, f"has a postscript starting with {marker!r}")
    return JudgeVerdict(False, f"no line starts with the postscript marker {marker!r}")


def _check_choose_from(
    prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext
) -> JudgeVerdict:
    text = response.strip()
    if text in args["options"]:
        return JudgeVerdict(True, f"answered with the allowed option {text!r}")
    return JudgeVerdict(False, f"the response is not exactly one of {list(args['options'])}")


def _check_bullets_exact(
    prompt: str, response: str, args: Mapping[str, Any], ctx: JudgeContext
) -> JudgeVerdict:
    count = count_bullets(response)
    if count == args["count"]:
        return JudgeVerdict(True, f"exactly {count} bullet point(s)")
    return JudgeVerdict(False, f"{count} bullet point(s), expected exactly {args['count']}")


def _no_args(name: str, description: str, check: Any, properties: dict[str, Any] | None = None) -> Judge:
    schema = {"type": "object", "properties": properties or {}, "additionalProperties": False}
    return Judge(name, description, schema, check, category="instruction")


def _letter_count(response: str, args: Mapping[str, Any]) -> int:
    return response.lower().count(args["letter"].lower())


JUDGES: tuple[Judge, ...] = (
    _bounded("word_count", "words", lambda r, a: count_words(r), "Number of words within bounds."),
    _bounded(
        "sentence_count", "sentences", lambda r, a: count_sentences(r), "Number of sentences within bounds."
    ),
    _bounded(
        "paragraph_count",
        "paragraphs",
        lambda r, a: count_paragraphs(r, a["separator"]),
        "Number of paragraphs (blank-line or *** separated) within bounds.",
        {
            "separator": {
                "type": "string",
                "enum": ["blank_line", "markdown_divider"],
                "default": "blank_line",
            }
        },
    ),
    _bounded(
        "bullet_count",
        "bullet points",
        lambda r, a: count_bullets(r),
        "Number of markdown bullet points (*, -, +) within bounds.",
    ),
    Judge(
        "bullet_count_exact",
        "Exactly `count` markdown bullet points (IFEval's detectable_format).",
        {
            "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 0}},
            "required": ["count"],
            "additionalProperties": False,
        },
        _check_bullets_exact,
        category="instruction",
    ),
    _bounded(
        "highlighted_sections",
        "highlighted sections",
        lambda r, a: count_highlights(r),
        "Number of *highlighted* markdown sections within bounds.",
    ),
    _bounded(
        "placeholder_count",
        "placeholders",
        lambda r, a: count_placeholders(r),
        "Number of [square bracket] placeholders within bounds.",
    ),
    _bounded(
        "section_count",
        "sections",
        lambda r, a: len(re.findall(rf"(?m)^[^\S\n]*{re.escape(a['splitter'])}\s+\d+", r)),
        "Number of sections marked `<splitter> <n>` at line starts (e.g. 'SECTION 1') within bounds.",
        {"splitter": {"type": "string", "minLength": 1, "default": "SECTION"}},
    ),
    _bounded(
        "capital_word_count",
        "all-capital words",
        lambda r, a: sum(1 for w in split_words(r) if w.isupper()),
        "Number of words written in all capitals within bounds.",
    ),
    _bounded(
        "letter_frequency",
        "occurrences of the letter",
        _letter_count,
        "Occurrences of one letter (case-insensitive) within bounds.",
        {"letter": {"type": "string", "minLength": 1, "maxLength": 1}},
    ),
    _bounded(
        "keyword_frequency",
        "occurrences of the keyword",
        lambda r, a: _keyword_hits(r, a["keyword"], a),
        "Occurrences of a keyword within bounds.",
        {"keyword": {"type": "string", "minLength": 1}, **_KEYWORD_OPTIONS},
    ),
    Judge(
        "keywords_include",
        "Every keyword appears in the response.",
        {
            "type": "object",
            "properties": {"keywords": _KEYWORD_LIST, **_KEYWORD_OPTIONS},
            "required": ["keywords"],
            "additionalProperties": False,
        },
        _check_keywords_include,
        category="instruction",
    ),
    Judge(
        "keywords_exclude",
        "No forbidden keyword appears in the response.",
        {
            "type": "object",
            "properties": {"keywords": _KEYWORD_LIST, **_KEYWORD_OPTIONS},
            "required": ["keywords"],
            "additionalProperties": False,
        },
        _check_keywords_exclude,
        category="instruction",
    ),
    _no_args(
        "json_format",
        "The whole response is valid JSON (optionally inside a ```json fence).",
        _check_json,
        {"allow_code_fence": {"type": "boolean", "default": True}},
    ),
    _no_args("no_commas", "The response contains no commas.", _check_no_commas),
    _no_args("all_lowercase", "Every letter is lowercase.", _check_case(upper=False)),
    _no_args("all_uppercase", "Every letter is uppercase.", _check_case(upper=True)),
    _affix_judge(ends=True),
    _affix_judge(ends=False),
    _no_args(
        "title", "Contains a title wrapped in double angular brackets, like <<poem of joy>>.", _check_title
    ),
    _no_args("quotation", "The whole response is wrapped in double quotation marks.", _check_quotation),
    _no_args(
        "two_responses", "Two different responses separated by six asterisks (******).", _check_two_responses
    ),
    _no_args(
        "repeat_prompt",
        "Starts by repeating the request (the prompt, or `prompt_to_repeat`) verbatim.",
        _check_repeat_prompt,
        {"prompt_to_repeat": {"type": "string", "minLength": 1}},
    ),
    _no_args(
        "postscript",
        "Has a postscript: a line starting with `marker` (default 'P.S.').",
        _check_postscript,
        {"marker": {"type": "string", "minLength": 1, "default": "P.S."}},
    ),
    Judge(
        "choose_from",
        "The whole response is exactly one of the given options.",
        {
            "type": "object",
            "properties": {"options": _KEYWORD_LIST},
            "required": ["options"],
            "additionalProperties": False,
        },
        _check_choose_from,
        category="instruction",
    ),
)
