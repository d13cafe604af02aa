"""Prompt data and the cursor that walks it, so a resumed run sees exactly the batches it would have seen.

A prompts JSONL line holds ``prompt`` (user text) or ``messages`` (chat messages before the response), and
optionally ``task`` (CGPO-style stratification; kept, unused by the RL family). The cursor shuffles once
per epoch with a seed derived from (run seed, epoch), so its whole state is two integers: that is what a
checkpoint saves, and `--resume` continues with the same next batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.training.config import ConfigError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class PromptRow:
    """One training prompt as chat messages (a plain ``prompt`` becomes one user message)."""

    messages: tuple[tuple[str, str], ...]
    task: str | None = None

    def as_messages(self, system: str | None = None) -> Messages:
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": role, "content": content} for role, content in self.messages]


def _row(line: str, where: str) -> PromptRow:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: not JSON ({error.msg}); each line is one JSON object") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object with 'prompt' or 'messages'")
    task = record.get("task")
    if isinstance(record.get("prompt"), str):
        return PromptRow((("user", record["prompt"]),), task)
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        try:
            pairs = tuple((str(m["role"]), str(m["content"])) for m in messages)
        except (TypeError, KeyError):
            raise ConfigError(f"{where}: every message needs 'role' and 'content'") from None
        if pairs[-1][0] == "assistant":
            raise ConfigError(f"{where}: 'messages' must end before the response (drop the last assistant turn)")
        return PromptRow(pairs, task)
    raise ConfigError(f"{where}: needs 'prompt' (text) or 'messages' (a non-empty list)")


def read_prompts(path: str | Path) -> list[PromptRow]:
    """Every prompt of a JSONL file (blank lines skipped); errors name the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error.__class__.__name__}); give a JSONL file with one "
                          "'prompt' or 'messages' per line") from None  # fmt: skip
    lines = enumerate(text.splitlines(), start=1)
    rows = [_row(line, f"{path}:{number}") for number, line in lines if line.strip()]
    if not rows:
        raise ConfigError(f"{path}: no prompts; each line needs 'prompt' or 'messages'")
    return rows


@dataclass
class PromptCursor:
    """Seeded epoch-shuffled walk over ``size`` prompts; ``state()`` / ``restore()`` make it resumable."""

    size: int
    seed: int
    epoch: int = 0
    position: int = 0

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def take(self, count: int) -> list[int]:
        """The next ``count`` prompt indices, wrapping into a freshly shuffled epoch when needed."""
        taken: list[int] = []
        while len(taken) < count:
            order = self._order()
            chunk = order[self.position : self.position + count - len(taken)]
            taken.extend(int(i) for i in chunk)
            self.position += len(chunk)
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
        return taken

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "size": self.size, "seed": self.seed}

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("size") != self.size:
            raise ConfigError(
                f"the checkpoint walked {state.get('size')} prompts but --prompts has {self.size}; resume with "
                "the same prompts file"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
