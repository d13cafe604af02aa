"""Readers for the fitting inputs: rating JSONL (stage 1) and preference JSONL (debiasing, stage 2).

The preference and intra-pair readers live in `service.preference.data` (the trainers read the same files
and may not import this package); they are re-exported here. Rating files are the fitter's own.

Formats (one JSON object per line; blank lines are ignored):

* **ratings** — ``{"messages": [{"role": "user", "content": "..."}, ..., {"role": "assistant", ...}],
  "ratings": {"objective-name": 0.7, "other": null}}``. The conversation must end with an assistant turn
  and have at least one message before it (the prompt, which the gate reads). A rating is a finite number
  or ``null``; ``null`` or an absent key means "not rated" and is masked out of that objective's fit.
  NaN/Infinity literals are rejected rather than guessed at — write ``null``. Ratings are used as given
  (ArmoRM rescaled its labels to [0, 1] beforehand). Objectives default to every key seen, in first-seen
  order; with an explicit list, other keys are ignored.
* **preferences** — ``{"prompt": str | messages, "chosen": str | messages, "rejected": str | messages}``.
  A string prompt is one user turn; a string response is one assistant turn appended to the prompt. A
  response given as messages is either the assistant turn(s) that follow the prompt (it starts with an
  assistant message) or the whole conversation (then ``prompt`` may be omitted and, if present, must be
  its beginning). Chosen and rejected must share the prompt (everything before the last message).
* **intra pairs** (MAPL, optional) — ``{"prompt_chosen": ..., "prompt_rejected": ..., "response": str |
  messages}``: one response under two prompts, the response satisfying the first prompt better.

Bad lines raise :class:`DataError` naming the file and the 1-based line. With ``skip_bad=True`` they are
skipped instead and listed (line and reason) in the result, so the report can count them. A rating file
in which an objective has no label at all always raises: such a head cannot be fitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.preference.data import (
    DataError,
    Message,
    PreferenceData,
    PreferencePair,
    Skip,
    parse_messages,
    read_intra_pairs,
    read_jsonl,
    read_preferences,
    require_conversation,
    require_keys,
)

__all__ = [
    "DataError",
    "Message",
    "PreferenceData",
    "PreferencePair",
    "RatedConversation",
    "RatingData",
    "Skip",
    "read_intra_pairs",
    "read_preferences",
    "read_ratings",
]


@dataclass(frozen=True)
class RatedConversation:
    messages: list[Message]
    line: int


@dataclass(frozen=True)
class RatingData:
    path: str
    objectives: list[str]
    examples: list[RatedConversation]
    labels: np.ndarray
    """(N, K) float64, NaN where an objective is not rated."""
    skipped: list[Skip] = field(default_factory=list)


def read_ratings(path: str | Path, objectives: Sequence[str] | None = None, *, skip_bad: bool = False) -> RatingData:
    """Parse a rating JSONL file into conversations and an (N, K) label matrix."""
    names: list[str] = list(objectives) if objectives else []
    fixed = bool(objectives)
    rows: list[tuple[RatedConversation, dict[str, float]]] = []

    def parse(obj: Any, line: int) -> tuple[RatedConversation, dict[str, float]]:
        require_keys(obj, ("messages", "ratings"))
        messages = parse_messages(obj["messages"], "messages")
        require_conversation(messages, "messages")
        ratings = obj["ratings"]
        if not isinstance(ratings, dict):
            raise ValueError(f"'ratings' must be an object of objective -> number | null, got {type(ratings).__name__}")
        values: dict[str, float] = {}
        for key, value in ratings.items():
            if fixed and key not in names:
                continue
            if value is None:
                values[str(key)] = math.nan  # unrated, but the key still names an objective
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"rating {key!r} must be a number or null, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"rating {key!r} is {value!r}; write null for a missing rating")
            values[str(key)] = float(value)
        return RatedConversation(messages, line), values

    skipped = read_jsonl(path, parse, rows, skip_bad)
    if not rows:
        raise DataError(path, None, "no usable rating lines; expected JSONL of {'messages': [...], 'ratings': {...}}")
    if not fixed:
        for _, values in rows:
            names.extend(k for k in values if k not in names)
    labels = np.full((len(rows), len(names)), np.nan)
    col = {n: i for i, n in enumerate(names)}
    for r, (_, values) in enumerate(rows):
        for key, value in values.items():
            labels[r, col[key]] = value
    empty = [n for i, n in enumerate(names) if not np.isfinite(labels[:, i]).any()]
    if empty:
        raise DataError(
            path, None,
            f"objective(s) {empty} have no rating on any of the {len(rows)} usable lines; "
            "add ratings or leave them out of --objectives",
        )  # fmt: skip
    return RatingData(str(path), names, [ex for ex, _ in rows], labels, skipped)
