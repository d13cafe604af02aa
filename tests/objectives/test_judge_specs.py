"""Judge specs: the schema validator, the registry, evaluate_judges' AND, and its error messages."""

from __future__ import annotations

import pytest

from service.objectives.judges import (
    Judge,
    JudgeContext,
    JudgeRegistry,
    JudgeSpecError,
    JudgeVerdict,
    default_registry,
    evaluate_judges,
    get_judge,
)
from service.objectives.judges.schema import check_schema_keywords, validate_args

SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 9},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2}},
        "x": {"type": ["string", "number"]},
    },
    "required": ["n"],
    "additionalProperties": False,
}


def test_schema_validator_accepts_valid_args() -> None:
    assert validate_args({"n": 3, "mode": "a", "tags": ["ok"], "x": 1.5}, SCHEMA) == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({}, "args: missing required property 'n'"),
        ({"n": 0}, "args.n: 0 is less than the minimum 1"),
        ({"n": 10}, "args.n: 10 is greater than the maximum 9"),
        ({"n": True}, "args.n: expected integer, got boolean"),
        ({"n": 1.5}, "args.n: expected integer, got number"),
        ({"n": 1, "mode": "c"}, "args.mode: 'c' is not one of ['a', 'b']"),
        ({"n": 1, "tags": []}, "args.tags: must have at least 1 item(s), got 0"),
        ({"n": 1, "tags": ["ok", "x"]}, "args.tags[1]: must have at least 2 character(s)"),
        ({"n": 1, "x": None}, "args.x: expected string or number, got null"),
        ({"n": 1, "extra": 1}, "args: unknown property ['extra']; allowed: ['mode', 'n', 'tags', 'x']"),
        ([1], "args: expected object, got array"),
    ],
)
def test_schema_validator_reports_each_problem(args: object, problem: str) -> None:
    problems = validate_args(args, SCHEMA)
    assert any(p.startswith(problem) for p in problems), problems


def test_unsupported_schema_keywords_fail_loudly() -> None:
    with pytest.raises(ValueError, match=r"unsupported JSON-schema keywords \['pattern'\]"):
        check_schema_keywords({"type": "object", "properties": {"s": {"type": "string", "pattern": "x"}}})


def test_every_builtin_schema_uses_only_supported_keywords() -> None:
    for judge in default_registry():
        check_schema_keywords(judge.args_schema)
        assert judge.describe()["args_schema"] == dict(judge.args_schema)


def test_defaults_are_filled_in_and_not_shared_between_calls() -> None:
    args = get_judge("refusal").validate({})
    assert args == {"expect": "comply", "window": 300, "extra_phrases": []}
    args["extra_phrases"].append("mutated")
    assert get_judge("refusal").validate({})["extra_phrases"] == []


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("word_count", {}, "give at least one of 'min' or 'max'"),
        ("word_count", {"min": 5, "max": 2}, "'min' (5) is greater than 'max' (2)"),
        ("letter_frequency", {"letter": "ab", "min": 1}, "args.letter: must have at most 1 character(s)"),
        ("regex", {"pattern": "("}, "args.pattern does not compile"),
        ("math_answer", {"answer": "1", "extract": "first"}, "args.extract: 'first' is not one of"),
        ("reward_threshold", {"objective": "safety"}, "give at least one of 'min' or 'max'"),
    ],
)
def test_bad_args_raise_with_the_judge_name_and_problem(name: str, args: dict, message: str) -> None:
    with pytest.raises(JudgeSpecError) as info:
        get_judge(name).validate(args)
    assert f"judge {name!r} got bad args" in str(info.value)
    assert message in str(info.value)


def test_evaluate_ands_the_verdicts() -> None:
    specs = [{"name": "no_commas"}, {"name": "word_count", "args": {"max": 3}}]
    passing = evaluate_judges("p", "two words", specs)
    assert passing.all_passed and [r.passed for r in passing.results] == [True, True]
    failing = evaluate_judges("p", "one, two, three, four", specs)
    assert not failing.all_passed
    assert [r.name for r in failing.results] == ["no_commas", "word_count"]
    assert failing.results[1].reason == "4 words, more than the allowed maximum of 3"
    assert evaluate_judges("p", "anything", []).all_passed  # no constraints: feasible


def test_evaluate_accepts_objects_with_name_and_args() -> None:
    class Spec:
        name = "reward_threshold"
        args = {"objective": "safety", "min": 0.5}

    report = evaluate_judges("p", "r", [Spec()], JudgeContext(rewards={"safety": 0.9}))
    assert report.all_passed and report.results[0].args == {"objective": "safety", "min": 0.5}


def test_unknown_judge_lists_the_valid_ones_and_its_position() -> None:
    with pytest.raises(JudgeSpecError) as info:
        evaluate_judges("p", "r", [{"name": "no_commas"}, {"name": "no_emojis"}])
    message = str(info.value)
    assert message.startswith("judges[1]: unknown judge 'no_emojis'; valid judges: [")
    for name in ("no_commas", "word_count", "math_answer", "refusal", "reward_threshold"):
        assert repr(name) in message


def test_all_specs_are_validated_before_any_judge_runs() -> None:
    calls: list[str] = []

    def record(prompt: str, response: str, args: object, ctx: JudgeContext) -> JudgeVerdict:
        calls.append(response)
        return JudgeVerdict(True, "ok")

    registry = JudgeRegistry(
        [Judge("spy", "records calls", {"type": "object", "additionalProperties": False}, record)]
    )
    with pytest.raises(
        JudgeSpecError, match=r"judges\[1\]: unknown judge 'missing'; valid judges: \['spy'\]"
    ):
        evaluate_judges("p", "r", [{"name": "spy"}, {"name": "missing"}], registry=registry)
    assert calls == []


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ({"name": "no_commas"}, "judges must be a list"),
        ([{"args": {}}], r"judges\[0\] must be .*'name' is missing"),
        ([{"name": "no_commas", "arg": {}}], r"judges\[0\] must be .*unknown keys \['arg'\]"),
        ([42], r"judges\[0\] is a int"),
        (
            [{"name": "word_count", "args": {"min": -1}}],
            r"judges\[0\]: judge 'word_count' got bad args: args.min: -1 is less",
        ),
    ],
)
def test_malformed_specs(specs: object, message: str) -> None:
    with pytest.raises(JudgeSpecError, match=message):
        evaluate_judges("p", "r", specs)  # type: ignore[arg-type]


def test_registry_rejects_duplicate_names() -> None:
    judge = get_judge("no_commas")
    registry = JudgeRegistry([judge])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(judge)
    assert "no_commas" in registry and len(registry) == 1
