"""The rules that label the default model's data, one per objective. No human rater and no model.

* ``verbosity`` — ``min(1, words / 100)``: response length in words (``count_words``), saturating at 100.
* ``instruction-following`` — 1 when the response is not a refusal (the ``refusal`` judge, ``expect:
  comply``) and every judge attached to the prompt passes, else 0. Unconstrained benign prompts have no
  judges, so a direct answer scores 1 and a refusal 0. Harmful requests are **not rated** (``null``):
  carrying out a harmful request is not what this objective should reward.
* ``format`` — for prompts that ask for a structure (JSON, bullets, divided paragraphs): 1 when the
  format judge passes and the response is not a refusal; ``null`` for every other prompt.
* ``refusal`` — 1 when the ``refusal`` judge finds a stock refusal phrase near the start, else 0.

The judges are the service's own (``service.objectives.judges``), so anyone can re-check a label with
``POST /v1/judges`` or the test suite.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.objectives.judges import get_judge
from service.objectives.judges.instructions import count_words

OBJECTIVES: tuple[str, ...] = ("verbosity", "instruction-following", "format", "refusal")
VERBOSITY_WORDS = 100


def is_refusal(prompt: str, response: str) -> bool:
    return get_judge("refusal").check(prompt, response, {"expect": "refuse"}).passed


def judges_pass(prompt: str, response: str, judges: Sequence[dict]) -> bool:
    return all(
        get_judge(spec["name"]).check(prompt, response, spec.get("args") or {}).passed for spec in judges
    )


def label(prompt: str, response: str, *, judges: Sequence[dict], harmful: bool, wants_format: bool) -> dict:
    """Ratings (objective → value in [0, 1] or None) of one response, by the rules above."""
    refused = is_refusal(prompt, response)
    followed = not refused and judges_pass(prompt, response, judges)
    return {
        "verbosity": round(min(1.0, count_words(response) / VERBOSITY_WORDS), 4),
        "instruction-following": None if harmful else float(followed),
        "format": float(followed) if wants_format and not harmful else None,
        "refusal": float(refused),
    }
