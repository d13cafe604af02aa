"""MAPL data construction: intra-sample prompt pairs and inter-sample multi-instruction pairs.

MAPL (Sun et al., arXiv 2505.12845) adds two preference signals to a (x, y_w, y_l) dataset without new
labels. Only the abstract and a partial third-party review were available (see algorithms.md §7), so:

- **Intra-sample** [third-party]: keep a response ``y`` fixed and build two augmented prompts with
  ``x_w ≻ x_l`` given ``y``. Two constructions, named by ``mode``:
  ``"all_vs_not_all"`` — ``y`` meets every instruction in ``x_w`` but not all in ``x_l``;
  ``"some_vs_none"`` — ``y`` meets at least one instruction in ``x_w`` and none in ``x_l``.
  In ``all_vs_not_all`` the instructions ``x_l`` shares with ``x_w`` are kept verbatim, so the two
  prompts differ only where ``y`` fails — [our reading] of "call the generators with different
  arguments".
- **Inter-sample** [our reading, not faithful — the paper's construction was not available]: from
  (x, y_w, y_l) build two prompts with the same number of instructions, all met by ``y_w``; in
  ``prompt_more`` ``y_l`` violates more of them than in ``prompt_fewer``. The trainer can then ask the
  reward margin ``r(prompt_more, y_w) − r(prompt_more, y_l)`` to exceed the margin under
  ``prompt_fewer`` (``−log σ(Δr_more − Δr_fewer)``), or use either prompt as an ordinary pair.

Every emitted pair is checked with the judges before it is returned, so labels are verified facts
about the text, whatever the generators did.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from service.objectives.judges import evaluate_judges
from service.objectives.mapl_generators import DEFAULT_GENERATORS, Instruction, InstructionGenerator

__all__ = [
    "InterPair",
    "IntraPair",
    "build_inter_pairs",
    "build_intra_pairs",
    "count_satisfied",
    "render_prompt",
]

IntraMode = Literal["all_vs_not_all", "some_vs_none"]
_ATTEMPTS_PER_PAIR = 8


@dataclass(frozen=True, slots=True)
class IntraPair:
    """``x_w ≻ x_l`` for the fixed response ``y`` (a response-conditioned Bradley–Terry pair)."""

    x_w: Any
    x_l: Any
    y: str
    instructions_w: tuple[Instruction, ...]
    instructions_l: tuple[Instruction, ...]
    mode: str


@dataclass(frozen=True, slots=True)
class InterPair:
    """Two multi-instruction prompts for one (chosen, rejected) pair; the margin under ``prompt_more``
    should exceed the margin under ``prompt_fewer`` [our reading]."""

    prompt_more: Any
    prompt_fewer: Any
    chosen: str
    rejected: str
    instructions_more: tuple[Instruction, ...]
    instructions_fewer: tuple[Instruction, ...]
    rejected_violations_more: int
    rejected_violations_fewer: int


def render_prompt(prompt: Any, instructions: Sequence[Instruction]) -> Any:
    """Append instruction texts to a prompt string, or to the last user turn of a chat message list."""
    suffix = " ".join(instruction.text for instruction in instructions)
    if isinstance(prompt, str):
        return f"{prompt.rstrip()}\n\n{suffix}" if suffix else prompt
    messages = [dict(message) for message in prompt]
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = render_prompt(message["content"], instructions)
            return messages
    raise ValueError("the chat prompt has no user message with string content to add instructions to")


def count_satisfied(response: str, prompt: Any, instructions: Sequence[Instruction]) -> int:
    """How many of ``instructions`` the judges say ``response`` meets."""
    text = prompt if isinstance(prompt, str) else str(prompt)
    report = evaluate_judges(text, response, [instruction.spec for instruction in instructions])
    return sum(result.passed for result in report.results)


def build_intra_pairs(
    prompt: Any,
    response: str,
    rng: random.Random,
    *,
    n_instructions: int = 3,
    n_pairs: int = 1,
    mode: IntraMode = "all_vs_not_all",
    generators: Sequence[InstructionGenerator] = DEFAULT_GENERATORS,
) -> list[IntraPair]:
    """Up to ``n_pairs`` verified intra-sample pairs for ``response`` (fewer if the response is too
    bare for the generators, e.g. an empty string).

    Each prompt gets ``n_instructions`` instructions from distinct generators.
    """
    _check_counts(n_instructions, n_pairs, len(generators))
    pairs: list[IntraPair] = []
    for _ in range(n_pairs * _ATTEMPTS_PER_PAIR):
        if len(pairs) == n_pairs:
            break
        built = _intra_candidate(response, rng, n_instructions, mode, generators)
        if built is None:
            continue
        instructions_w, instructions_l = built
        x_w, x_l = render_prompt(prompt, instructions_w), render_prompt(prompt, instructions_l)
        met_w = count_satisfied(response, x_w, instructions_w)
        met_l = count_satisfied(response, x_l, instructions_l)
        holds = (
            met_w == len(instructions_w) and met_l < len(instructions_l)
            if mode == "all_vs_not_all"
            else met_w >= 1 and met_l == 0
        )
        if holds:
            pairs.append(IntraPair(x_w, x_l, response, instructions_w, instructions_l, mode))
    return pairs


def build_inter_pairs(
    prompt: Any,
    chosen: str,
    rejected: str,
    rng: random.Random,
    *,
    n_instructions: int = 3,
    n_pairs: int = 1,
    generators: Sequence[InstructionGenerator] = DEFAULT_GENERATORS,
) -> list[InterPair]:
    """Up to ``n_pairs`` verified inter-sample pairs [our reading; see the module docstring].

    Instructions come from distinct generators and are all met by ``chosen``; each is either
    *discriminating* (``rejected`` fails it) or *neutral* (``rejected`` meets it too). ``prompt_more``
    holds ``d_more ≥ 1`` discriminating instructions, ``prompt_fewer`` holds ``d_fewer < d_more``.
    """
    _check_counts(n_instructions, n_pairs, len(generators))
    pairs: list[InterPair] = []
    for _ in range(n_pairs * _ATTEMPTS_PER_PAIR):
        if len(pairs) == n_pairs:
            break
        discriminating, neutral = _classify(chosen, rejected, rng, generators)
        if not discriminating:
            break  # the rejected response meets everything the chosen one does: nothing to contrast
        d_more = rng.randint(1, min(len(discriminating), n_instructions))
        d_fewer = rng.randint(0, d_more - 1)
        if len(neutral) < n_instructions - d_fewer or len(neutral) < n_instructions - d_more:
            continue
        more = _pick(discriminating, d_more, rng) + _pick(neutral, n_instructions - d_more, rng)
        fewer = _pick(discriminating, d_fewer, rng) + _pick(neutral, n_instructions - d_fewer, rng)
        rng.shuffle(more)
        rng.shuffle(fewer)
        prompt_more, prompt_fewer = render_prompt(prompt, more), render_prompt(prompt, fewer)
        violations_more = n_instructions - count_satisfied(rejected, prompt_more, more)
        violations_fewer = n_instructions - count_satisfied(rejected, prompt_fewer, fewer)
        chosen_ok = count_satisfied(chosen, prompt_more, more) + count_satisfied(chosen, prompt_fewer, fewer)
        if chosen_ok == 2 * n_instructions and violations_more > violations_fewer:
            pairs.append(
                InterPair(
                    prompt_more,
                    prompt_fewer,
                    chosen,
                    rejected,
                    tuple(more),
                    tuple(fewer),
                    violations_more,
                    violations_fewer,
                )
            )
    return pairs


def _intra_candidate(
    response: str, rng: random.Random, n: int, mode: IntraMode, generators: Sequence[InstructionGenerator]
) -> tuple[tuple[Instruction, ...], tuple[Instruction, ...]] | None:
    """Instruction lists for (x_w, x_l), or None when the generators cannot fill them for ``response``."""
    order = list(generators)
    rng.shuffle(order)
    if mode == "all_vs_not_all":
        # Slots: (generator, satisfied instruction, violated instruction or None).
        slots = [
            (g, ok, g.generate(response, False, rng))
            for g in order
            if (ok := g.generate(response, True, rng))
        ]
        slots = slots[:n]
        flippable = [i for i, (_, _, bad) in enumerate(slots) if bad is not None]
        if len(slots) < n or not flippable:
            return None
        flipped = set(rng.sample(flippable, rng.randint(1, len(flippable))))
        w = tuple(ok for _, ok, _ in slots)
        l_ = tuple(bad if i in flipped and bad is not None else ok for i, (_, ok, bad) in enumerate(slots))
        return w, l_
    # some_vs_none: the same n generators in both prompts; x_l takes every violated variant, x_w swaps
    # k >= 1 of them for their satisfied variants.
    slots = [
        (bad, g.generate(response, True, rng)) for g in order if (bad := g.generate(response, False, rng))
    ]
    slots = slots[:n]
    satisfiable = [i for i, (_, ok) in enumerate(slots) if ok is not None]
    if len(slots) < n or not satisfiable:
        return None
    swapped = set(rng.sample(satisfiable, rng.randint(1, len(satisfiable))))
    w = tuple(ok if i in swapped and ok is not None else bad for i, (bad, ok) in enumerate(slots))
    return w, tuple(bad for bad, _ in slots)


def _classify(
    chosen: str, rejected: str, rng: random.Random, generators: Sequence[InstructionGenerator]
) -> tuple[list[Instruction], list[Instruction]]:
    """One instruction per generator that ``chosen`` meets, split by whether ``rejected`` meets it too."""
    discriminating: list[Instruction] = []
    neutral: list[Instruction] = []
    for generator in generators:
        instruction = generator.generate(chosen, True, rng)
        if instruction is None:
            continue
        rejected_meets = evaluate_judges("", rejected, [instruction.spec]).all_passed
        (neutral if rejected_meets else discriminating).append(instruction)
    return discriminating, neutral


def _pick(pool: list[Instruction], k: int, rng: random.Random) -> list[Instruction]:
    return rng.sample(pool, k) if k > 0 else []


def _check_counts(n_instructions: int, n_pairs: int, n_generators: int) -> None:
    if n_instructions < 1 or n_instructions > n_generators:
        raise ValueError(
            f"n_instructions must be between 1 and {n_generators} (one per generator), got {n_instructions}"
        )
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
