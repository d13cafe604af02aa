"""MAPL: generators agree with their judges, and every emitted pair is verified by the judges."""

from __future__ import annotations

import random

import pytest

from service.objectives.judges import evaluate_judges, get_judge
from service.objectives.mapl import build_inter_pairs, build_intra_pairs, render_prompt
from service.objectives.mapl_generators import DEFAULT_GENERATORS, Instruction

RESPONSES = [
    "Paris is the capital of France. It has about 2,100,000 residents.\n\n* The Seine\n* The Louvre",
    "the answer is four because two plus two is four",
    "OK",
    '{"answer": 4}',
    '"A quoted reply, with a comma."\nP.S. thanks',
    "<<Spring>>\nBlossoms fall softly\nOn the *quiet* pond\n\nSECTION 2\nmore [name] here",
    "",
]
PROMPT = "Tell me something."


def passes(response: str, prompt: object, instructions: tuple[Instruction, ...]) -> list[bool]:
    report = evaluate_judges(str(prompt), response, [i.spec for i in instructions])
    return [r.passed for r in report.results]


@pytest.mark.parametrize("response", RESPONSES)
def test_every_generator_output_gets_the_requested_verdict(response: str) -> None:
    rng = random.Random(7)
    produced = 0
    for generator in DEFAULT_GENERATORS:
        for satisfied in (True, False):
            for _ in range(4):
                instruction = generator.generate(response, satisfied, rng)
                if instruction is None:
                    continue
                produced += 1
                get_judge(instruction.spec["name"]).validate(instruction.spec["args"])  # specs are valid
                assert passes(response, PROMPT, (instruction,)) == [satisfied], (generator.name, instruction)
    assert produced > 0


def test_generators_cover_many_instruction_kinds() -> None:
    assert len({g.name for g in DEFAULT_GENERATORS}) == len(DEFAULT_GENERATORS) >= 15


@pytest.mark.parametrize("response", RESPONSES[:6])
def test_intra_pairs_all_vs_not_all(response: str) -> None:
    pairs = build_intra_pairs(PROMPT, response, random.Random(0), n_instructions=3, n_pairs=4)
    assert pairs, "a non-empty response should yield pairs"
    for pair in pairs:
        assert pair.y == response and pair.mode == "all_vs_not_all"
        assert len(pair.instructions_w) == len(pair.instructions_l) == 3
        assert all(passes(response, pair.x_w, pair.instructions_w))
        assert not all(passes(response, pair.x_l, pair.instructions_l))
        assert pair.x_w.startswith(PROMPT) and pair.x_w != pair.x_l
        for instruction in pair.instructions_w:
            assert instruction.text in pair.x_w
        kinds = [i.spec["name"] for i in pair.instructions_w]
        assert len(set(kinds)) == len(kinds)  # one instruction per generator


@pytest.mark.parametrize("response", RESPONSES[:6])
def test_intra_pairs_some_vs_none(response: str) -> None:
    pairs = build_intra_pairs(PROMPT, response, random.Random(1), n_pairs=3, mode="some_vs_none")
    assert pairs
    for pair in pairs:
        assert any(passes(response, pair.x_w, pair.instructions_w))
        assert not any(passes(response, pair.x_l, pair.instructions_l))


def test_intra_pairs_are_deterministic_for_a_seed() -> None:
    first = build_intra_pairs(PROMPT, RESPONSES[0], random.Random(3), n_pairs=2)
    second = build_intra_pairs(PROMPT, RESPONSES[0], random.Random(3), n_pairs=2)
    assert [(p.x_w, p.x_l) for p in first] == [(p.x_w, p.x_l) for p in second]


def test_chat_prompts_get_instructions_in_the_last_user_turn() -> None:
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Name a city."},
    ]
    pair = build_intra_pairs(chat, "Paris, France.", random.Random(0))[0]
    assert pair.x_w[:3] == chat[:3]
    assert pair.x_w[3]["content"].startswith("Name a city.\n\n")
    assert chat[3]["content"] == "Name a city."  # the input is not mutated
    with pytest.raises(ValueError, match="no user message"):
        render_prompt([{"role": "system", "content": "x"}], pair.instructions_w)


def test_inter_pairs_order_margins_by_rejected_violations() -> None:
    chosen = "Paris is the capital of France. It has many museums.\n\n* The Seine\n* The Louvre"
    rejected = "paris, i think"
    pairs = build_inter_pairs(PROMPT, chosen, rejected, random.Random(0), n_instructions=3, n_pairs=4)
    assert pairs
    for pair in pairs:
        assert all(passes(chosen, pair.prompt_more, pair.instructions_more))
        assert all(passes(chosen, pair.prompt_fewer, pair.instructions_fewer))
        more = passes(rejected, pair.prompt_more, pair.instructions_more)
        fewer = passes(rejected, pair.prompt_fewer, pair.instructions_fewer)
        assert more.count(False) == pair.rejected_violations_more >= 1
        assert fewer.count(False) == pair.rejected_violations_fewer < pair.rejected_violations_more


def test_inter_pairs_need_something_to_discriminate() -> None:
    same = "Identical text."
    assert build_inter_pairs(PROMPT, same, same, random.Random(0)) == []


def test_bad_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_instructions must be between 1 and"):
        build_intra_pairs(PROMPT, "x", random.Random(0), n_instructions=0)
    with pytest.raises(ValueError, match="n_pairs must be >= 1"):
        build_inter_pairs(PROMPT, "a", "b", random.Random(0), n_pairs=0)
