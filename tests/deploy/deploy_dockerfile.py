"""A minimal Dockerfile parser for the deploy tests: instructions with their build stage, no daemon needed.

Handles what our Dockerfile uses: the `# syntax` directive, comment lines, backslash line continuations
(comment lines inside a continuation are dropped, as BuildKit does), and multi-stage builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction; `stage` counts FROM lines from 0 (-1 for ARGs before the first FROM)."""

    stage: int
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec-form) argument list, or None for shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.partition("CMD")[2]
        try:
            value = json.loads(text.strip())
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Parse Dockerfile text into instructions, in order."""
    instructions: list[Instruction] = []
    stage = -1
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip(), start))
    if pending:
        raise ValueError("Dockerfile ends inside a line continuation (trailing backslash)")
    return instructions
