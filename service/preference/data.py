"""Preference JSONL readers shared by the reward-model fitter and the policy trainers.

``paretorm fit`` (``service.fitting``) and ``paretorm train modpo | mapl`` (``service.training``) read the
same files, and the trainers may not import ``service.fitting`` (they reach the service over HTTP only and
must not pull its model stack; tests/training/test_imports.py), so the readers live here, in a package
that depends on neither (json and the standard library only). ``service.fitting.data`` re-exports them.

Formats (one JSON object per line; blank lines are ignored):

* **preferences** — ``{"prompt": str | messages, "chosen": str | messages, "rejected": str | messages}``.
  A string prompt is one user turn; a string response is one assistant turn appended to the prompt. A
  response given as messages is either the assistant turn(s) that follow the prompt (it starts with an
  assistant message) or the whole conversation (then ``prompt`` may be omitted and, if present, must be
  its beginning). Chosen and rejected must share the prompt (everything before the last message).
* **intra pairs** (MAPL) — ``{"prompt_chosen": ..., "prompt_rejected": ..., "response": str |
  messages}``: one response under two prompts, the response satisfying the first prompt better.
* **MAPL augmented files** (``paretorm augment``'s output) — lines of the three kinds above and
  ``"inter"`` lines ``{"prompt_more", "prompt_fewer", "chosen", "rejected"}``, told apart by ``kind``
  (or, without it, by their keys), grouped by ``source_line`` into one `MaplExample` per original pair.

Bad lines raise :class:`DataError` naming the file and the 1-based line. With ``skip_bad=True`` they are
skipped instead and listed (line and reason) in the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

Message = dict[str, str]
_ROLES = frozenset({"system", "user", "assistant", "tool"})
T = TypeVar("T")


class DataError(ValueError):
    """A preference input is malformed; ``path`` and (1-based) ``line`` say where."""

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
class PreferencePair:
    chosen: list[Message]
    rejected: list[Message]
    line: int


@dataclass(frozen=True)
class PreferenceData:
    path: str
    pairs: list[PreferencePair]
    skipped: list[Skip] = field(default_factory=list)


def read_preferences(path: str | Path, *, skip_bad: bool = False) -> PreferenceData:
    """Parse a preference JSONL file into full chosen/rejected conversations sharing one prompt."""
    pairs: list[PreferencePair] = []
    skipped = read_jsonl(path, _preference, pairs, skip_bad)
    if not pairs:
        raise DataError(path, None, "no usable preference lines; expected JSONL of {'prompt', 'chosen', 'rejected'}")
    return PreferenceData(str(path), pairs, skipped)


def read_intra_pairs(path: str | Path, *, skip_bad: bool = False) -> PreferenceData:
    """Parse MAPL intra-sample triples into pairs whose two sides share the response, not the prompt."""
    pairs: list[PreferencePair] = []
    skipped = read_jsonl(path, _intra, pairs, skip_bad)
    if not pairs:
        raise DataError(path, None, "no usable intra-pair lines; expected {'prompt_chosen', 'prompt_rejected', 'response'}")
    return PreferenceData(str(path), pairs, skipped)


def read_jsonl(path: str | Path, parse: Callable[[Any, int], T], out: list[T], skip_bad: bool) -> list[Skip]:
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


def require_file(path: str | Path) -> Path:
    """``path`` as a `Path`; a `DataError` that says so when no such file exists."""
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, "file not found; pass an existing JSONL file")
    return p


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    p = require_file(path)
    with p.open(encoding="utf-8") as fh:
        for i, text in enumerate(fh, start=1):
            if text.strip():
                yield i, text


def require_keys(obj: dict[str, Any], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in obj or obj[k] is None]
    if missing:
        raise ValueError(f"missing field(s) {missing}; present: {sorted(obj)}")


def parse_messages(value: Any, what: str) -> list[Message]:
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


def require_conversation(messages: list[Message], what: str) -> None:
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"'{what}' has no assistant turn at the end (last role {messages[-1]['role']!r}); "
                         "the reward is read at the end of an assistant response")  # fmt: skip
    if len(messages) < 2:
        raise ValueError(f"'{what}' has no prompt before the assistant turn; the gate reads the prompt")


def _prompt(value: Any, what: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages = parse_messages(value, what)
    if messages[-1]["role"] == "assistant":
        raise ValueError(f"'{what}' ends with an assistant turn; a prompt ends with the user's message")
    return messages


def _conversation(prompt: list[Message] | None, response: Any, what: str) -> list[Message]:
    if isinstance(response, str):
        if prompt is None:
            raise ValueError(f"'{what}' is a plain string but there is no 'prompt' to attach it to")
        messages = [*prompt, {"role": "assistant", "content": response}]
    else:
        turns = parse_messages(response, what)
        if turns[0]["role"] == "assistant":
            if prompt is None:
                raise ValueError(f"'{what}' starts with an assistant turn but there is no 'prompt'")
            messages = [*prompt, *turns]
        else:
            if prompt is not None and turns[: len(prompt)] != prompt:
                raise ValueError(f"'{what}' is a full conversation that does not start with 'prompt'")
            messages = turns
    require_conversation(messages, what)
    return messages


@dataclass(frozen=True)
class InterPair:
    """[our reading of MAPL] one (chosen, rejected) pair under two prompts; the chosen response meets
    every instruction of both, the rejected one violates more of ``more``'s than of ``fewer``'s."""

    more_chosen: list[Message]
    more_rejected: list[Message]
    fewer_chosen: list[Message]
    fewer_rejected: list[Message]
    line: int


@dataclass(frozen=True)
class MaplExample:
    """One original pair and the MAPL pairs built from it (any part may be missing)."""

    source: int
    pairs: list[PreferencePair] = field(default_factory=list)
    intra: list[PreferencePair] = field(default_factory=list)
    inter: list[InterPair] = field(default_factory=list)


@dataclass(frozen=True)
class MaplData:
    path: str
    examples: list[MaplExample]
    skipped: list[Skip] = field(default_factory=list)


def read_mapl(path: str | Path, *, skip_bad: bool = False) -> MaplData:
    """Parse ``paretorm augment`` output, grouped by ``source_line`` (a line without one is its own group)."""
    parsers = {"original": _preference, "intra": _intra, "inter": _inter}

    def parse(obj: Any, line: int) -> tuple[int, str, PreferencePair | InterPair]:
        kind = obj.get("kind") or _kind_from_keys(obj)
        if kind not in parsers:
            raise ValueError(f"unknown kind {kind!r}; use original, intra or inter (paretorm augment writes them)")
        source = obj.get("source_line", -line)
        if isinstance(source, bool) or not isinstance(source, int):
            raise ValueError(f"'source_line' must be an integer, got {source!r}")
        return source, kind, parsers[kind](obj, line)

    rows: list[tuple[int, str, PreferencePair | InterPair]] = []
    skipped = read_jsonl(path, parse, rows, skip_bad)
    groups: dict[int, MaplExample] = {}
    for source, kind, item in rows:
        example = groups.setdefault(source, MaplExample(source))
        {"original": example.pairs, "intra": example.intra, "inter": example.inter}[kind].append(item)  # type: ignore[attr-defined]
    if not groups:
        raise DataError(path, None, "no usable MAPL lines; build the file with paretorm augment")
    return MaplData(str(path), list(groups.values()), skipped)


def _kind_from_keys(obj: dict[str, Any]) -> str:
    if "prompt_chosen" in obj:
        return "intra"
    return "inter" if "prompt_more" in obj else "original"


def _preference(obj: Any, line: int) -> PreferencePair:
    require_keys(obj, ("chosen", "rejected"))
    prompt = _prompt(obj["prompt"], "prompt") if obj.get("prompt") is not None else None
    chosen = _conversation(prompt, obj["chosen"], "chosen")
    rejected = _conversation(prompt, obj["rejected"], "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise ValueError("'chosen' and 'rejected' have different prompts (messages before the last turn)")
    return PreferencePair(chosen, rejected, line)


def _intra(obj: Any, line: int) -> PreferencePair:
    require_keys(obj, ("prompt_chosen", "prompt_rejected", "response"))
    better = _conversation(_prompt(obj["prompt_chosen"], "prompt_chosen"), obj["response"], "response")
    worse = _conversation(_prompt(obj["prompt_rejected"], "prompt_rejected"), obj["response"], "response")
    return PreferencePair(better, worse, line)


def _inter(obj: Any, line: int) -> InterPair:
    require_keys(obj, ("prompt_more", "prompt_fewer", "chosen", "rejected"))
    more, fewer = _prompt(obj["prompt_more"], "prompt_more"), _prompt(obj["prompt_fewer"], "prompt_fewer")
    return InterPair(_conversation(more, obj["chosen"], "chosen"), _conversation(more, obj["rejected"], "rejected"),
                     _conversation(fewer, obj["chosen"], "chosen"), _conversation(fewer, obj["rejected"], "rejected"),
                     line)  # fmt: skip
