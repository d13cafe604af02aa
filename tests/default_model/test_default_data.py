"""The default model's shipped data: reproducible from the generator, labelled by the judges, held out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.default_model import banks
from service.default_model.dataset import (
    FILES,
    PREFERENCES,
    RATINGS,
    generate,
    main,
    render,
    response_ladder,
    shipped_dir,
)
from service.default_model.labels import OBJECTIVES, is_refusal, judges_pass, label
from service.fitting.data import read_preferences, read_ratings
from service.objectives.judges.instructions import count_words


@pytest.fixture(scope="module")
def shipped() -> dict[str, list[dict]]:
    return {name: [json.loads(x) for x in (shipped_dir() / name).read_text().splitlines()] for name in FILES}


@pytest.fixture(scope="module")
def fresh() -> dict[str, list[dict]]:
    return generate()


def test_generator_is_deterministic_and_seed_sensitive(fresh: dict[str, list[dict]]) -> None:
    assert generate() == fresh
    assert generate(seed=1)["ratings.jsonl"] != fresh["ratings.jsonl"]


def test_shipped_files_equal_the_generator_output(fresh: dict[str, list[dict]]) -> None:
    for name in FILES:
        assert (shipped_dir() / name).read_text(encoding="utf-8") == render(fresh[name]), (
            f"{name} is stale; run `python -m service.default_model.dataset`"
        )
    assert main(["--check"]) == 0


def test_check_flags_an_edited_file(tmp_path: Path) -> None:
    for name in FILES:
        (tmp_path / name).write_text((shipped_dir() / name).read_text())
    (tmp_path / "ratings.jsonl").write_text("{}\n")
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_fitting_readers_accept_the_files() -> None:
    ratings = read_ratings(shipped_dir() / "ratings.jsonl", OBJECTIVES)
    assert ratings.objectives == list(OBJECTIVES) and len(ratings.examples) == RATINGS
    assert len(read_preferences(shipped_dir() / "preferences.jsonl").pairs) == PREFERENCES
    assert len(read_preferences(shipped_dir() / "heldout.jsonl").pairs) == 60


def test_every_rating_is_what_the_judges_say(shipped: dict[str, list[dict]]) -> None:
    for line in shipped["ratings.jsonl"]:
        prompt, response = line["messages"][0]["content"], line["messages"][1]["content"]
        meta = line["meta"]
        expected = label(prompt, response, judges=meta["judges"], harmful=meta["kind"] == "harmful",
                         wants_format=meta["kind"] == "format")  # fmt: skip
        assert line["ratings"] == expected
        assert line["ratings"]["verbosity"] == min(1.0, round(count_words(response) / 100, 4))
        # The construction and the judges agree: refusals refuse, satisfying responses satisfy.
        assert line["ratings"]["refusal"] == float(meta["response"] == "refusal")
        if meta["kind"] in ("instruction", "format"):
            assert line["ratings"]["instruction-following"] == float(meta["response"] == "satisfying")


def test_labels_cover_every_objective_with_both_classes(shipped: dict[str, list[dict]]) -> None:
    for objective in ("instruction-following", "format", "refusal"):
        values = {line["ratings"][objective] for line in shipped["ratings.jsonl"]} - {None}
        assert values == {0.0, 1.0}, objective
    verbosity = [line["ratings"]["verbosity"] for line in shipped["ratings.jsonl"]]
    assert min(verbosity) < 0.1 and max(verbosity) > 0.5
    assert all(line["ratings"]["instruction-following"] is None
               for line in shipped["ratings.jsonl"] if line["meta"]["kind"] == "harmful")  # fmt: skip


@pytest.mark.parametrize("name", ["preferences.jsonl", "heldout.jsonl"])
def test_preference_pairs_are_right_by_the_judges(shipped: dict[str, list[dict]], name: str) -> None:
    for line in shipped[name]:
        prompt, chosen, rejected, meta = line["prompt"], line["chosen"], line["rejected"], line["meta"]
        assert chosen != rejected
        if meta["kind"] == "harmful":
            assert is_refusal(prompt, chosen) and not is_refusal(prompt, rejected)
        elif meta["kind"] in ("instruction", "format"):
            assert judges_pass(prompt, chosen, meta["judges"]) and not is_refusal(prompt, chosen)
            assert is_refusal(prompt, rejected) or not judges_pass(prompt, rejected, meta["judges"])
        else:  # plain: an answer over a refusal, or the same answer over its padded copy
            assert not is_refusal(prompt, chosen)
            assert is_refusal(prompt, rejected) or (
                rejected.count(chosen) == 1 and len(rejected) > len(chosen)
            )


def test_heldout_uses_only_heldout_questions(shipped: dict[str, list[dict]]) -> None:
    def questions(heldout: bool) -> set[str]:
        return {f.question for f in banks.split(banks.BENIGN, heldout)} | set(
            banks.split(banks.HARMFUL, heldout)
        )

    train, held = questions(False), questions(True)
    assert not train & held

    def source(prompt: str) -> str:
        return next(q for q in train | held if prompt.startswith(q))

    assert {source(x["prompt"]) for x in shipped["heldout.jsonl"]} <= held
    assert {source(x["messages"][0]["content"]) for x in shipped["ratings.jsonl"]} <= train
    assert {source(x["prompt"]) for x in shipped["preferences.jsonl"]} <= train


def test_response_ladder_grows() -> None:
    for fact in banks.BENIGN:
        lengths = [count_words(r) for r in response_ladder(fact)]
        assert lengths == sorted(lengths) and len(set(lengths)) == 4
