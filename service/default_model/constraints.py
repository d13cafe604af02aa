"""Verifiable instructions for the default model's data: prompt text, the judges that check it, and
responses built to satisfy or to violate it.

Each :class:`Constraint` turns a :class:`~service.default_model.banks.Fact` into an instruction appended to
the question, the judge specs (``{"name", "args"}``, the project's own IFEval-style judges) that verify it,
and two responses: one that satisfies every judge and one that violates at least one. The labels written to
the data set are **not** these intentions: ``labels.py`` runs the judges on the final text, and the generator
refuses to write an example whose judged label disagrees with the construction (a bug here can cost an
example, never produce a wrong label).

``FORMAT`` constraints ask for a structure (JSON object, bullet list, divided paragraphs); their
satisfying and violating responses carry the same sentences, so length never tells them apart.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.default_model import banks
from service.default_model.banks import Fact
from service.objectives.judges.instructions import count_words

JudgeSpec = dict[str, Any]


@dataclass(frozen=True)
class Built:
    """One constrained prompt with a satisfying and a violating response."""

    instruction: str
    judges: list[JudgeSpec]
    satisfying: str
    violating: str


@dataclass(frozen=True)
class Constraint:
    name: str
    build: Callable[[Fact, random.Random], Built]
    is_format: bool = False


def _base(fact: Fact, rng: random.Random) -> str:
    """The answer, sometimes with one sentence of detail (so constrained responses vary in length)."""
    return fact.answer if rng.random() < 0.5 else f"{fact.answer} {fact.more[0]}"


def _full(fact: Fact) -> str:
    return " ".join((fact.answer, *fact.more))


def _max_words(fact: Fact, rng: random.Random) -> Built:
    limit = count_words(fact.answer) + rng.randint(1, 4)
    long = " ".join((_full(fact), *rng.sample(banks.FILLER, 2)))
    spec = {"name": "word_count", "args": {"max": limit}}
    return Built(f"Answer in at most {limit} words.", [spec], fact.answer, long)


def _min_words(fact: Fact, rng: random.Random) -> Built:
    full = _full(fact)
    limit = count_words(full) - rng.randint(0, 3)
    spec = {"name": "word_count", "args": {"min": limit}}
    return Built(f"Answer with at least {limit} words.", [spec], full, fact.answer)


def _lowercase(fact: Fact, rng: random.Random) -> Built:
    base = _base(fact, rng)
    text = (
        "Your entire response should be in English, and in all lowercase letters. "
        "No capital letters are allowed."
    )
    return Built(text, [{"name": "all_lowercase", "args": {}}], base.lower(), base)


def _uppercase(fact: Fact, rng: random.Random) -> Built:
    base = _base(fact, rng)
    text = "Your entire response should be in English, and in all capital letters."
    return Built(text, [{"name": "all_uppercase", "args": {}}], base.upper(), base)


def _no_commas(fact: Fact, rng: random.Random) -> Built:
    base = _base(fact, rng)
    text = "In your entire response, refrain from the use of any commas."
    return Built(
        text, [{"name": "no_commas", "args": {}}], base.replace(",", ""), f"Well, here it is. {base}"
    )


def _ends_with(fact: Fact, rng: random.Random) -> Built:
    base, phrase = _base(fact, rng), rng.choice(banks.ENDINGS)
    text = f"Finish your response with this exact phrase: {phrase} No other words should follow this phrase."
    return Built(text, [{"name": "ends_with", "args": {"phrase": phrase}}], f"{base} {phrase}", base)


def _starts_with(fact: Fact, rng: random.Random) -> Built:
    base, phrase = _base(fact, rng), rng.choice(banks.OPENINGS)
    text = f"Start your response with the words '{phrase}'."
    return Built(text, [{"name": "starts_with", "args": {"phrase": phrase}}], f"{phrase}: {base}", base)


def _keyword(fact: Fact, rng: random.Random) -> Built:
    base, kw = _base(fact, rng), rng.choice(banks.KEYWORDS)
    sentence = rng.choice(banks.KEYWORD_SENTENCES).format(kw=kw)
    text = f"Include the keyword '{kw}' in your response."
    spec = {"name": "keywords_include", "args": {"keywords": [kw]}}
    return Built(text, [spec], f"{base} {sentence}", base)


def _postscript(fact: Fact, rng: random.Random) -> Built:
    base = _base(fact, rng)
    text = "At the end of your response, please explicitly add a postscript starting with P.S."
    return Built(
        text, [{"name": "postscript", "args": {}}], f"{base}\n\n{rng.choice(banks.POSTSCRIPTS)}", base
    )


def _title(fact: Fact, rng: random.Random) -> Built:
    base = _base(fact, rng)
    text = "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."
    return Built(text, [{"name": "title", "args": {}}], f"<<{rng.choice(banks.TITLES)}>>\n{base}", base)


def _quotation(fact: Fact, rng: random.Random) -> Built:
    base = _base(fact, rng)
    text = "Wrap your entire response with double quotation marks."
    return Built(text, [{"name": "quotation", "args": {}}], f'"{base}"', base)


def _json(fact: Fact, rng: random.Random) -> Built:
    text = 'Reply only with a JSON object with the keys "answer" and "topic".'
    satisfying = json.dumps({"answer": fact.answer, "topic": fact.topic})
    violating = f"{fact.answer} The topic is {fact.topic}."
    return Built(text, [{"name": "json_format", "args": {}}], satisfying, violating)


def _bullets(fact: Fact, rng: random.Random) -> Built:
    text = (
        "Your answer must contain exactly 3 bullet points. "
        "Use the markdown bullet points such as:\n* This is point 1."
    )
    sentences = (fact.answer, *fact.more)
    spec = {"name": "bullet_count_exact", "args": {"count": 3}}
    return Built(text, [spec], "\n".join(f"* {s}" for s in sentences), " ".join(sentences))


def _paragraphs(fact: Fact, rng: random.Random) -> Built:
    text = "There should be 2 paragraphs. Paragraphs are separated with the markdown divider: ***"
    spec = {"name": "paragraph_count", "args": {"min": 2, "max": 2, "separator": "markdown_divider"}}
    satisfying = f"{fact.answer} {fact.more[0]}\n***\n{fact.more[1]}"
    return Built(text, [spec], satisfying, _full(fact))


INSTRUCTIONS: tuple[Constraint, ...] = (
    Constraint("max_words", _max_words),
    Constraint("min_words", _min_words),
    Constraint("lowercase", _lowercase),
    Constraint("uppercase", _uppercase),
    Constraint("no_commas", _no_commas),
    Constraint("ends_with", _ends_with),
    Constraint("starts_with", _starts_with),
    Constraint("keyword", _keyword),
    Constraint("postscript", _postscript),
    Constraint("title", _title),
    Constraint("quotation", _quotation),
)
FORMATS: tuple[Constraint, ...] = (
    Constraint("json", _json, is_format=True),
    Constraint("bullets", _bullets, is_format=True),
    Constraint("paragraphs", _paragraphs, is_format=True),
)
