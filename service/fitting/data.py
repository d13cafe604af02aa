"""Readers for the fitting inputs: rating JSONL (stage 1) and preference JSONL (debiasing, stage 2).

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

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

Message = dict[str, str]
_ROLES = frozenset({"system", "user", "assistant", "tool"})
T = TypeVar("T")


class DataError(ValueError):
    """A fitting input is malformed; ``path`` and (1-based) ``line`` say where."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.reason = message


@dataclass(frozen=True)
class Skip:
    line: int
    reason: str


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


@dataclass(frozen=True)
class PreferencePair:
    chosen: list[Message]
    rejected: list[Message]
    line: int


@dataclass(frozen=True)
class PreferenceData:
    path: str
    pairs: list[PreferencePair]
    skipped: list[Skip] = field(default_factory=list)


def read_ratings(path: str | Path, objectives: Sequence[str] | None = None, *, skip_bad: bool = False) -> RatingData:
    """Parse a rating JSONL file into conversations and an (N, K) label matrix."""
    names: list[str] = list(objectives) if objectives else []
    fixed = bool(objectives)
    rows: list[tuple[RatedConversation, dict[str, float]]] = []

    def parse(obj: Any, line: int) -> tuple[RatedConversation, dict[str, float]]:
        _require_keys(obj, ("messages", "ratings"))
        messages = _messages(obj["messages"], "messages")
        _require_conversation(messages, "messages")
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

    skipped = _read_jsonl(path, parse, rows, skip_bad)
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


def read_preferences(path: str | Path, *, skip_bad: bool = False) -> PreferenceData:
    """Parse a preference JSONL file into full chosen/rejected conversations sharing one prompt."""

    def parse(obj: Any, line: int) -> PreferencePair:
        _require_keys(obj, ("chosen", "rejected"))
        prompt = _prompt(obj["prompt"], "prompt") if obj.get("prompt") is not None else None
        chosen = _conversation(prompt, obj["chosen"], "chosen")
        rejected = _conversation(prompt, obj["rejected"], "rejected")
        if chosen[:-1] != rejected[:-1]:
            raise ValueError("'chosen' and 'rejected' have different prompts (messages before the last turn)")
        return PreferencePair(chosen, rejected, line)

    pairs: list[PreferencePair] = []
    skipped = _read_jsonl(path, parse, pairs, skip_bad)
    if not pairs:
        raise DataError(path, None, "no usable preference lines; expected JSONL of {'prompt', 'chosen', 'rejected'}")
    return PreferenceData(str(path), pairs, skipped)


def read_intra_pairs(path: str | Path, *, skip_bad: bool = False) -> PreferenceData:
    """Parse MAPL intra-sample triples into pairs whose two sides share the response, not the prompt."""

    def parse(obj: Any, line: int) -> PreferencePair:
        _require_keys(obj, ("prompt_chosen", "prompt_rejected", "response"))
        better = _conversation(_prompt(obj["prompt_chosen"], "prompt_chosen"), obj["response"], "response")
        worse = _conversation(_prompt(obj["prompt_rejected"], "prompt_rejected"), obj["response"], "response")
        return PreferencePair(better, worse, line)

    pairs: list[PreferencePair] = []
    skipped = _read_jsonl(path, parse, pairs, skip_bad)
    if not pairs:
        raise DataError(path, None, "no usable intra-pair lines; expected {'prompt_chosen', 'prompt_rejected', 'response'}")
    return PreferenceData(str(path), pairs, skipped)


def _read_jsonl(path: str | Path, parse: Callable[[Any, int], T], out: list[T], skip_bad: bool) -> list[Skip]:
    """Apply ``parse`` to every non-blank line; wrap its ValueErrors into DataError or a Skip."""
    skipped: list[Skip] = []
    for line_no, text in _lines(path):
        try:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            out.append(parse(obj, line_no))
        except ValueError as exc:
            if not skip_bad:
                raise DataError(path, line_no, str(exc)) from None
            skipped.append(Skip(line_no, str(exc)))
    return skipped


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, "file not found; pass an existing JSONL file")
    with p.open(encoding="utf-8") as fh:
        for i, text in enumerate(fh, start=1):
            if text.strip():
                yield i, text


def _require_keys(obj: dict[str, Any], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in obj or obj[k] is None]
    if missing:
        raise ValueError(f"missing field(s) {missing}; present: {sorted(obj)}")


def _messages(value: Any, what: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"'{what}' must be a non-empty list of {{'role', 'content'}} messages")
    out: list[Message] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"'{what}'[{i}] must be an object with string 'role' and 'content', got {m!r:.80}")
        if m["role"] not in _ROLES:
            raise ValueError(f"'{what}'[{i}] has role {m['role']!r}; use one of {sorted(_ROLES)}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _require_conversation(messages: list[Message], what: str) -> None:
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"'{what}' has no assistant turn at the end (last role {messages[-1]['role']!r}); "
                         "the reward is read at the end of an assistant response")  # fmt: skip
    if len(messages) < 2:
        raise ValueError(f"'{what}' has no prompt before the assistant turn; the gate reads the prompt")


def _prompt(value: Any, what: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages = _messages(value, what)
    if messages[-1]["role"] == "assistant":
        raise ValueError(f"'{what}' ends with an assistant turn; a prompt ends with the user's message")
    return messages


def _conversation(prompt: list[Message] | None, response: Any, what: str) -> list[Message]:
    if isinstance(response, str):
        if prompt is None:
            raise ValueError(f"'{what}' is a plain string but there is no 'prompt' to attach it to")
        messages = [*prompt, {"role": "assistant", "content": response}]
    else:
        turns = _messages(response, what)
        if turns[0]["role"] == "assistant":
            if prompt is None:
                raise ValueError(f"'{what}' starts with an assistant turn but there is no 'prompt'")
            messages = [*prompt, *turns]
        else:
            if prompt is not None and turns[: len(prompt)] != prompt:
                raise ValueError(f"'{what}' is a full conversation that does not start with 'prompt'")
            messages = turns
    _require_conversation(messages, what)
    return messages
