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


def stage_names(instructions: list[Instruction]) -> dict[int, str]:
    """Stage number -> name, for the stages named with `FROM ... AS name`."""
    return {i.stage: i.args.split()[-1] for i in instructions if i.keyword == "FROM" and " AS " in i.args}


def resolved_env(instructions: list[Instruction], stage: int) -> dict[str, str]:
    """ENV in effect in `stage`: its own ENV lines over those of the stages it is built FROM (in order)."""
    names = stage_names(instructions)
    parents = {i.stage: i.args.split()[0] for i in instructions if i.keyword == "FROM"}
    chain: list[int] = []
    current: int | None = stage
    while current is not None:
        chain.append(current)
        current = next((n for n, name in names.items() if name == parents[current]), None)
    env: dict[str, str] = {}
    for number in reversed(chain):
        for instruction in instructions:
            if instruction.stage == number and instruction.keyword == "ENV":
                for pair in instruction.args.split():
                    key, _, value = pair.partition("=")
                    env[key] = value
    return env
