"""MAPL instruction generators, each paired with the judge that verifies it.

MAPL (Sun et al., arXiv 2505.12845) builds prompts that a *fixed* response does or does not satisfy
from a set of verifiable-instruction generators ``g_i(y, True/False)`` [third-party review]. Here each
generator reads the response ``y`` (its word count, its last words, whether it has commas ...) and
emits an instruction text plus the judge spec that checks it, chosen so the judge on ``y`` returns the
requested truth value. Generators return None when that is impossible for this ``y`` (e.g. "use no
commas" cannot be *satisfied* by a response with commas). The pair builders in `mapl` still run every
judge before emitting a pair, so a generator bug can cost a pair but never produce a wrong label.

Instruction wording follows IFEval's phrasing where an IFEval instruction exists.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.objectives.judges import get_judge
from service.objectives.judges.instructions import (
    count_bullets,
    count_highlights,
    count_paragraphs,
    count_placeholders,
    count_sentences,
    count_words,
    split_words,
)

__all__ = ["DEFAULT_GENERATORS", "Instruction", "InstructionGenerator"]

_ABSENT_WORDS = (
    "lighthouse", "marmalade", "glacier", "saxophone", "origami", "volcano", "tapestry", "nebula",
    "cinnamon", "harbor", "kaleidoscope", "meadow", "porcelain", "thunderstorm", "velvet", "zeppelin",
)  # fmt: skip
_ABSENT_ENDINGS = (
    "Is there anything else I can help with?",
    "Let me know if you have additional questions.",
    "That is all.",
    "Any other questions?",
)
_ABSENT_STARTS = ("My answer is", "Dear reader", "In summary", "Once upon a time")


@dataclass(frozen=True, slots=True)
class Instruction:
    """An instruction appended to a prompt and the judge spec (``{"name", "args"}``) that verifies it."""

    text: str
    spec: dict[str, Any] = field(hash=False)


GenerateFn = Callable[[str, bool, random.Random], Instruction | None]


@dataclass(frozen=True, slots=True)
class InstructionGenerator:
    """``generate(y, satisfied, rng)`` → an instruction ``y`` satisfies iff ``satisfied``, or None."""

    name: str
    generate: GenerateFn


def _bounded(
    name: str,
    judge: str,
    counter: Callable[[str], int],
    at_least: str,
    at_most: str,
    fixed_args: dict[str, Any] | None = None,
) -> InstructionGenerator:
    """Count bound instructions: "at least k" with k ≤ n (or k > n), "at most k" with k ≥ n (or k < n)."""

    def generate(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
        n = counter(y)
        options: list[tuple[str, int]] = []
        if satisfied:
            if n >= 1:
                options.append(("min", rng.randint(max(1, n // 2), n)))
            options.append(("max", rng.randint(max(1, n), 2 * n + 5)))
        else:
            options.append(("min", rng.randint(n + 1, 2 * n + 5)))
            if n >= 2:
                options.append(("max", rng.randint(max(1, n // 2), n - 1)))
        bound, k = rng.choice(options)
        text = (at_least if bound == "min" else at_most).format(k=k)
        return Instruction(text, {"name": judge, "args": {**(fixed_args or {}), bound: k}})

    return InstructionGenerator(name, generate)


def _deterministic(judge: str, text: str) -> InstructionGenerator:
    """Instructions without parameters: usable only when the judge's verdict on ``y`` is the one requested."""

    def generate(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
        if get_judge(judge).check("", y).passed != satisfied:
            return None
        return Instruction(text, {"name": judge, "args": {}})

    return InstructionGenerator(judge, generate)


def _content_words(y: str) -> list[str]:
    return sorted({w.lower() for w in split_words(y) if w.isalpha() and len(w) >= 4})


def _keywords_include(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
    if satisfied:
        words = _content_words(y)
        if not words:
            return None
        chosen = rng.sample(words, k=min(len(words), rng.randint(1, 2)))
    else:
        absent = [w for w in _ABSENT_WORDS if w not in y.lower()]
        chosen = [rng.choice(absent)]
    text = f"Include the keywords {', '.join(repr(w) for w in chosen)} in the response."
    return Instruction(text, {"name": "keywords_include", "args": {"keywords": chosen}})


def _keywords_exclude(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
    if satisfied:
        chosen = rng.choice([w for w in _ABSENT_WORDS if w not in y.lower()])
    else:
        words = _content_words(y)
        if not words:
            return None
        chosen = rng.choice(words)
    return Instruction(
        f"Do not include the word {chosen!r} in the response.",
        {"name": "keywords_exclude", "args": {"keywords": [chosen]}},
    )


def _ends_with(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
    text = y.strip()
    if satisfied:
        last_line = text.rsplit("\n", 1)[-1]  # a phrase across a line break reads badly as an instruction
        words = _word_starts(last_line)
        if not words:
            return None
        phrase = last_line[words[-min(len(words), rng.randint(2, 5))] :]
    else:
        options = [p for p in _ABSENT_ENDINGS if not text.lower().endswith(p.lower())]
        phrase = rng.choice(options)
    return Instruction(
        f"Finish your response with this exact phrase: {phrase!r}. No other words should follow.",
        {"name": "ends_with", "args": {"phrase": phrase}},
    )


def _starts_with(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
    text = y.strip()
    if satisfied:
        first_line = text.split("\n", 1)[0]
        ends = _word_ends(first_line)
        if not ends:
            return None
        phrase = first_line[: ends[min(len(ends), rng.randint(2, 4)) - 1]]
    else:
        phrase = rng.choice([p for p in _ABSENT_STARTS if not text.lower().startswith(p.lower())])
    return Instruction(
        f"Start your response with the exact phrase {phrase!r}.",
        {"name": "starts_with", "args": {"phrase": phrase}},
    )


def _letter_frequency(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
    letter = rng.choice("etaoinsrhl")
    n = y.lower().count(letter)
    if satisfied:
        if n == 0:
            return None
        k = rng.randint(max(1, n // 2), n)
    else:
        k = rng.randint(n + 1, 2 * n + 5)
    return Instruction(
        f"In your response, the letter {letter!r} should appear at least {k} times.",
        {"name": "letter_frequency", "args": {"letter": letter, "min": k}},
    )


def _bullets_exact(y: str, satisfied: bool, rng: random.Random) -> Instruction | None:
    n = count_bullets(y)
    if satisfied and n == 0:
        return None
    k = n if satisfied else rng.choice([c for c in (n - 1, n + 1, n + 2) if c >= 1])
    return Instruction(
        f"Your answer must contain exactly {k} bullet points. "
        "Use the markdown bullet points such as: * This is a point.",
        {"name": "bullet_count_exact", "args": {"count": k}},
    )


def _word_starts(text: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", text)]


def _word_ends(text: str) -> list[int]:
    return [m.end() for m in re.finditer(r"\S+", text)]


DEFAULT_GENERATORS: tuple[InstructionGenerator, ...] = (
    _bounded(
        "word_count",
        "word_count",
        count_words,
        "Answer with at least {k} words.",
        "Answer with at most {k} words.",
    ),
    _bounded(
        "sentence_count",
        "sentence_count",
        count_sentences,
        "Your response should contain at least {k} sentences.",
        "Your response should contain at most {k} sentences.",
    ),
    _bounded(
        "paragraph_count",
        "paragraph_count",
        count_paragraphs,
        "There should be at least {k} paragraphs, separated from each other by a blank line.",
        "There should be at most {k} paragraphs, separated from each other by a blank line.",
    ),
    _bounded(
        "length_chars",
        "length",
        len,
        "Your response should be at least {k} characters long.",
        "Your response should be at most {k} characters long.",
        {"unit": "chars"},
    ),
    _bounded(
        "capital_word_count",
        "capital_word_count",
        lambda y: sum(1 for w in split_words(y) if w.isupper()),
        "Use words with all capital letters at least {k} times.",
        "Use words with all capital letters at most {k} times.",
    ),
    _bounded(
        "highlighted_sections",
        "highlighted_sections",
        count_highlights,
        "Highlight at least {k} sections in your answer with markdown, i.e. *highlighted section*.",
        "Highlight at most {k} sections in your answer with markdown, i.e. *highlighted section*.",
    ),
    _bounded(
        "placeholder_count",
        "placeholder_count",
        count_placeholders,
        "The response must contain at least {k} placeholders represented by square brackets, "
        "such as [address].",
        "The response must contain at most {k} placeholders represented by square brackets, "
        "such as [address].",
    ),
    InstructionGenerator("keywords_include", _keywords_include),
    InstructionGenerator("keywords_exclude", _keywords_exclude),
    InstructionGenerator("ends_with", _ends_with),
    InstructionGenerator("starts_with", _starts_with),
    InstructionGenerator("letter_frequency", _letter_frequency),
    InstructionGenerator("bullet_count_exact", _bullets_exact),
    _deterministic("no_commas", "In your entire response, refrain from the use of any commas."),
    _deterministic(
        "all_lowercase",
        "Your entire response should be in English, and in all lowercase letters. "
        "No capital letters are allowed.",
    ),
    _deterministic("all_uppercase", "Your entire response should be in English, and in all capital letters."),
    _deterministic(
        "title",
        "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
    ),
    _deterministic("quotation", "Wrap your entire response with double quotation marks."),
    _deterministic(
        "postscript", "At the end of your response, please explicitly add a postscript starting with P.S."
    ),
    _deterministic("json_format", "Entire output should be wrapped in JSON format."),
)
