"""Augment a preference JSONL file with MAPL pairs: the library call and the ``paretorm augment`` CLI.

Input lines are ``{"prompt", "chosen", "rejected"}`` (the prompt a string or a chat message list).
Output lines carry a ``kind``:

- ``"original"``: the input pair, copied (unless ``keep_original=False``);
- ``"intra"``: ``{"prompt_chosen": x_w, "prompt_rejected": x_l, "response": y, "response_role":
  "chosen"|"rejected", "mode", "instructions_chosen", "instructions_rejected"}`` — for a reward model,
  ``r(x_w, y) > r(x_l, y)``. Pairs are built for both responses of each input pair by default, as in the
  Rc-BT predecessor (whether MAPL keeps both halves is [unknown]);
- ``"inter"``: ``{"prompt_more", "prompt_fewer", "chosen", "rejected", ...}`` [our reading].

Every output line has ``source_line`` (1-based) so a pair can be traced back to its input. Output is
deterministic for a given ``seed``: each input line gets its own RNG seeded from (seed, line number), so
editing one line does not reshuffle the rest.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from service.objectives.mapl import build_inter_pairs, build_intra_pairs
from service.objectives.mapl_generators import Instruction

__all__ = ["AugmentStats", "MaplInputError", "augment_jsonl", "main"]

Responses = Literal["both", "chosen"]


class MaplInputError(ValueError):
    """A bad input line; the message names the file and the 1-based line number."""


@dataclass(slots=True)
class AugmentStats:
    """Counts written per kind, for logs and tests."""

    lines: int = 0
    original: int = 0
    intra: int = 0
    inter: int = 0


def augment_jsonl(
    in_path: str | Path,
    out_path: str | Path,
    *,
    seed: int = 0,
    n_instructions: int = 3,
    intra_per_response: int = 1,
    inter_per_pair: int = 1,
    responses: Responses = "both",
    keep_original: bool = True,
) -> AugmentStats:
    """Read preference pairs from ``in_path`` and write originals plus MAPL pairs to ``out_path``.

    Raises:
        MaplInputError: a line that is not JSON, not an object, or lacks a string ``chosen``/``rejected``
            or a string/chat-list ``prompt`` — naming ``file:line``. Nothing is written in that case.
    """
    records = list(_read(Path(in_path)))
    stats = AugmentStats()
    out: list[dict[str, Any]] = []
    for line_number, record in records:
        stats.lines += 1
        rng = random.Random(f"{seed}:{line_number}")
        prompt, chosen, rejected = record["prompt"], record["chosen"], record["rejected"]
        if keep_original:
            out.append({"kind": "original", "source_line": line_number, **record})
            stats.original += 1
        roles = [("chosen", chosen)] + ([("rejected", rejected)] if responses == "both" else [])
        for role, response in roles:
            for pair in build_intra_pairs(
                prompt, response, rng, n_instructions=n_instructions, n_pairs=intra_per_response
            ):
                out.append({
                    "kind": "intra", "source_line": line_number, "response_role": role, "mode": pair.mode,
                    "prompt_chosen": pair.x_w, "prompt_rejected": pair.x_l, "response": pair.y,
                    "instructions_chosen": _specs(pair.instructions_w),
                    "instructions_rejected": _specs(pair.instructions_l),
                })  # fmt: skip
                stats.intra += 1
        if inter_per_pair:
            for inter in build_inter_pairs(
                prompt, chosen, rejected, rng, n_instructions=n_instructions, n_pairs=inter_per_pair
            ):
                out.append({
                    "kind": "inter", "source_line": line_number, "prompt_more": inter.prompt_more,
                    "prompt_fewer": inter.prompt_fewer, "chosen": inter.chosen, "rejected": inter.rejected,
                    "instructions_more": _specs(inter.instructions_more),
                    "instructions_fewer": _specs(inter.instructions_fewer),
                    "rejected_violations_more": inter.rejected_violations_more,
                    "rejected_violations_fewer": inter.rejected_violations_fewer,
                })  # fmt: skip
                stats.inter += 1
    with Path(out_path).open("w", encoding="utf-8") as handle:
        for item in out:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """``paretorm augment IN OUT [--seed N] ...``; returns the process exit code (2 on bad input)."""
    parser = argparse.ArgumentParser(
        prog="paretorm augment",
        description="Add MAPL intra-sample and inter-sample instruction pairs to a preference JSONL file.",
    )
    parser.add_argument("in_path", help='input JSONL with {"prompt", "chosen", "rejected"} per line')
    parser.add_argument("out_path", help="output JSONL (overwritten)")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed; same seed, same output")
    parser.add_argument("--n-instructions", type=int, default=3, help="instructions added per prompt")
    parser.add_argument("--intra-per-response", type=int, default=1, help="intra-sample pairs per response")
    parser.add_argument(
        "--inter-per-pair", type=int, default=1, help="inter-sample pairs per input pair (0: none)"
    )
    parser.add_argument(
        "--responses",
        choices=["both", "chosen"],
        default="both",
        help="build intra pairs for both responses (Rc-BT style) or only the chosen one",
    )
    parser.add_argument(
        "--no-original", action="store_true", help="do not copy the input pairs to the output"
    )
    args = parser.parse_args(argv)
    try:
        stats = augment_jsonl(
            args.in_path, args.out_path, seed=args.seed, n_instructions=args.n_instructions,
            intra_per_response=args.intra_per_response, inter_per_pair=args.inter_per_pair,
            responses=args.responses, keep_original=not args.no_original,
        )  # fmt: skip
    except (MaplInputError, OSError, ValueError) as error:
        sys.stderr.write(f"paretorm augment: {error}\n")
        return 2
    sys.stderr.write(
        f"paretorm augment: {stats.lines} input pairs -> {stats.original} original, {stats.intra} intra, "
        f"{stats.inter} inter lines in {args.out_path}\n"
    )
    return 0


def _read(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise MaplInputError(
                    f"{where}: not valid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise MaplInputError(f"{where}: expected a JSON object, got {type(record).__name__}")
            for key in ("chosen", "rejected"):
                if not isinstance(record.get(key), str):
                    raise MaplInputError(f"{where}: '{key}' must be a string (got {_kind(record.get(key))})")
            if not _valid_prompt(record.get("prompt")):
                raise MaplInputError(
                    f"{where}: 'prompt' must be a string or a list of chat messages with a user turn "
                    f"(got {_kind(record.get('prompt'))})"
                )
            records.append((line_number, record))
    return records


def _valid_prompt(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return True
    return isinstance(prompt, list) and any(
        isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str) for m in prompt
    )


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _specs(instructions: Sequence[Instruction]) -> list[dict[str, Any]]:
    return [{"text": i.text, **i.spec} for i in instructions]


if __name__ == "__main__":
    sys.exit(main())
