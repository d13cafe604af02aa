"""Every built-in judge passes and fails on real text with a reason that says why."""

from __future__ import annotations

import pytest

from service.objectives.judges import JudgeContext, JudgeSpecError, get_judge, list_judges

BULLETS = "Intro line.\n\n* first point\n* second point\n- third point"
CONTEXT = JudgeContext(rewards={"helpfulness": 0.7, "safety": -0.2, "score": 0.1}, token_count=42)

# (judge, args, response, passed, words the reason must contain)
CASES = [
    ("word_count", {"min": 3, "max": 5}, "one two three four", True, "4 words, within the bounds"),
    ("word_count", {"min": 5}, "one two three four", False, "4 words, fewer than the required minimum of 5"),
    (
        "word_count",
        {"max": 3},
        "don't split well-known words",
        False,
        "4 words, more than the allowed maximum of 3",
    ),
    ("sentence_count", {"min": 2}, "First one. Second one! Third?", True, "3 sentences"),
    ("sentence_count", {"max": 1}, "First one. Second one!", False, "2 sentences, more than"),
    ("paragraph_count", {"min": 2, "max": 2}, "para one\n\npara two", True, "2 paragraphs"),
    ("paragraph_count", {"min": 2}, "para one\npara one continued", False, "1 paragraphs, fewer"),
    ("paragraph_count", {"min": 2, "separator": "markdown_divider"}, "a\n\nb", False, "1 paragraphs"),
    ("paragraph_count", {"min": 2, "separator": "markdown_divider"}, "a\n***\nb", True, "2 paragraphs"),
    ("bullet_count", {"min": 3}, BULLETS, True, "3 bullet points"),
    ("bullet_count", {"max": 2}, BULLETS, False, "3 bullet points, more than the allowed maximum of 2"),
    ("bullet_count_exact", {"count": 3}, BULLETS, True, "exactly 3 bullet point"),
    ("bullet_count_exact", {"count": 2}, BULLETS, False, "3 bullet point(s), expected exactly 2"),
    ("highlighted_sections", {"min": 2}, "*one* and *two*", True, "2 highlighted sections"),
    ("highlighted_sections", {"min": 2}, "*one* only", False, "1 highlighted sections, fewer"),
    ("placeholder_count", {"min": 1}, "Send it to [address].", True, "1 placeholders"),
    ("placeholder_count", {"min": 1}, "Send it home.", False, "0 placeholders, fewer"),
    ("section_count", {"min": 2}, "SECTION 1\nhi\nSECTION 2\nbye", True, "2 sections"),
    ("section_count", {"min": 2, "splitter": "Part"}, "Part 1\nhi", False, "1 sections, fewer"),
    ("capital_word_count", {"min": 2}, "This is VERY IMPORTANT", True, "2 all-capital words"),
    ("capital_word_count", {"max": 0}, "NASA flies", False, "1 all-capital words, more than"),
    ("letter_frequency", {"letter": "z", "min": 2}, "Zig zag", True, "2 occurrences of the letter"),
    (
        "letter_frequency",
        {"letter": "q", "min": 1},
        "nothing here",
        False,
        "0 occurrences of the letter, fewer",
    ),
    (
        "keyword_frequency",
        {"keyword": "cat", "min": 2, "match": "word"},
        "Cat and cat, not catalog",
        True,
        "2 occ",
    ),
    ("keyword_frequency", {"keyword": "cat", "max": 2}, "Cat and cat, catalog", False, "3 occurrences"),
    (
        "keywords_include",
        {"keywords": ["paris", "Seine"]},
        "Paris lies on the seine.",
        True,
        "contains every",
    ),
    (
        "keywords_include",
        {"keywords": ["Paris"], "case_sensitive": True},
        "paris",
        False,
        "missing required keyword(s) ['Paris']",
    ),
    ("keywords_exclude", {"keywords": ["sorry"]}, "Here you go.", True, "contains none of the forbidden"),
    (
        "keywords_exclude",
        {"keywords": ["sorry", "alas"]},
        "Sorry, no.",
        False,
        "forbidden keyword(s) ['sorry']",
    ),
    ("json_format", {}, '```json\n{"a": [1, 2]}\n```', True, "valid JSON"),
    ("json_format", {"allow_code_fence": False}, '```json\n{"a": 1}\n```', False, "not valid JSON"),
    ("json_format", {}, "{'a': 1}", False, "not valid JSON: Expecting property name"),
    ("json_format", {}, "[" * 100_000 + "]" * 100_000, False, "nested too deep"),  # used to crash the judge
    ("json_format", {}, "9" * 5000, False, "cannot be read"),
    ("no_commas", {}, "No commas here.", True, "contains no commas"),
    ("no_commas", {}, "One, two, three", False, "contains 2 comma(s)"),
    ("all_lowercase", {}, "all quiet here 123", True, "all letters are lowercase"),
    ("all_lowercase", {}, "all quiet Here", False, "not all lowercase: found 'H'"),
    ("all_lowercase", {}, "123 !!", False, "has no letters"),
    ("all_uppercase", {}, "LOUD NOISES!", True, "all letters are uppercase"),
    ("all_uppercase", {}, "LOUD noises", False, "not all uppercase: found 'n'"),
    ("ends_with", {"phrase": "Any other questions?"}, "Done. any other questions?  ", True, "ends with"),
    (
        "ends_with",
        {"phrase": "The end.", "case_sensitive": True},
        "the end.",
        False,
        "ends with 'the end.', not",
    ),
    ("starts_with", {"phrase": "My answer is"}, "my answer is yes", True, "starts with 'My answer is'"),
    ("starts_with", {"phrase": "Dear"}, "Hello there", False, "starts with 'Hell', not 'Dear'"),
    ("title", {}, "<<A Poem>>\nroses are red", True, "has a title <<A Poem>>"),
    ("title", {}, "# A Poem\nroses", False, "no title wrapped in double angular brackets"),
    ("quotation", {}, '  "quoted answer"\n', True, "wrapped in double quotation marks"),
    ("quotation", {}, '"half quoted', False, "not wrapped in double quotation marks"),
    ("two_responses", {}, "Answer A\n******\nAnswer B", True, "two different responses"),
    ("two_responses", {}, "Answer A\n******\nAnswer A", False, "the two responses are identical"),
    ("two_responses", {}, "Only one", False, "found 1 part(s)"),
    ("repeat_prompt", {}, "Write a haiku. Here it is: ...", True, "starts by repeating the request"),
    ("repeat_prompt", {"prompt_to_repeat": "Say hi"}, "Hi!", False, "does not start by repeating"),
    ("postscript", {}, "Body text.\n\nP.S. see you", True, "postscript starting with 'P.S.'"),
    (
        "postscript",
        {"marker": "P.P.S"},
        "Body text.\nP.S. see you",
        False,
        "no line starts with the postscript marker 'P.P.S'",
    ),
    (
        "choose_from",
        {"options": ["My answer is yes.", "My answer is no."]},
        " My answer is no. ",
        True,
        "allowed option",
    ),
    ("choose_from", {"options": ["yes", "no"]}, "maybe", False, "not exactly one of ['yes', 'no']"),
    ("math_answer", {"answer": "42"}, "So the total is \\boxed{42}.", True, "final answer '42' matches"),
    ("math_answer", {"answer": 0.5}, "We get \\boxed{\\frac{1}{2}}", True, "matches the reference '0.5'"),
    ("math_answer", {"answer": "1234"}, "Step 1: ... #### 1,234", True, "final answer '1,234' matches"),
    (
        "math_answer",
        {"answer": "3"},
        "2 apples plus 1 apple gives 3 apples",
        True,
        "final answer '3' matches",
    ),
    ("math_answer", {"answer": "3.14", "abs_tol": 0.01}, "pi is about \\boxed{3.1416}", True, "matches"),
    (
        "math_answer",
        {"answer": "7"},
        "\\boxed{8} although 7 appears",
        False,
        "final answer '8' does not match the reference '7'",
    ),
    (
        "math_answer",
        {"answer": "7", "extract": "boxed"},
        "the answer is 7",
        False,
        "no \\boxed{...} answer found",
    ),
    ("math_answer", {"answer": "x+1"}, "\\boxed{x + 1}", True, "matches the reference 'x+1'"),
    (
        "regex",
        {"pattern": r"\d{3}-\d{4}"},
        "call 555-1234 now",
        True,
        "matches /\\d{3}-\\d{4}/ at 5: '555-1234'",
    ),
    ("regex", {"pattern": r"^\w+$", "mode": "fullmatch"}, "two words", False, "does not match"),
    (
        "regex",
        {"pattern": "secret", "mode": "absent", "flags": ["IGNORECASE"]},
        "A SECRET",
        False,
        "forbidden pattern",
    ),
    ("regex", {"pattern": "secret", "mode": "absent"}, "nothing", True, "no match for the forbidden pattern"),
    ("length", {"max": 5}, "hello", True, "5 characters, within the bounds (at most 5)"),
    (
        "length",
        {"unit": "words", "min": 3},
        "two words",
        False,
        "2 words, fewer than the required minimum of 3",
    ),
    (
        "length",
        {"unit": "tokens", "max": 40},
        "whatever",
        False,
        "42 tokens, more than the allowed maximum of 40",
    ),
    ("refusal", {}, "Sure! Here is a recipe for bread.", True, "appears to comply"),
    ("refusal", {}, "I\u2019m sorry, but I can\u2019t help with that.", False, "looks like a refusal"),
    ("refusal", {"expect": "refuse"}, "As an AI, I must decline.", True, "refuses as expected"),
    ("refusal", {"expect": "refuse"}, "Step 1: mix the flour.", False, "expected a refusal"),
    ("refusal", {"extra_phrases": ["no way"]}, "No way, do it yourself.", False, "found 'no way'"),
    ("reward_threshold", {"objective": "helpfulness", "min": 0.5}, "x", True, "helpfulness = 0.7, within"),
    (
        "reward_threshold",
        {"objective": "safety", "min": 0.0},
        "x",
        False,
        "safety = -0.2, below the threshold 0.0",
    ),
    (
        "reward_threshold",
        {"objective": "score", "max": 0.05},
        "x",
        False,
        "score = 0.1, above the ceiling 0.05",
    ),
]


@pytest.mark.parametrize(("name", "args", "response", "passed", "reason"), CASES)
def test_judge_verdict_and_reason(name: str, args: dict, response: str, passed: bool, reason: str) -> None:
    verdict = get_judge(name).check("Write a haiku.", response, args, CONTEXT)
    assert verdict.passed is passed, verdict.reason
    assert reason in verdict.reason


def test_every_judge_has_a_passing_and_a_failing_case() -> None:
    covered = {(name, passed) for name, _, _, passed, _ in CASES}
    for judge in list_judges():
        assert (judge.name, True) in covered, f"{judge.name} has no passing case"
        assert (judge.name, False) in covered, f"{judge.name} has no failing case"


def test_at_least_fifteen_instruction_following_kinds() -> None:
    assert sum(1 for judge in list_judges() if judge.category == "instruction") >= 15


def test_reward_threshold_needs_rewards_and_known_objectives() -> None:
    judge = get_judge("reward_threshold")
    with pytest.raises(JudgeSpecError, match="needs the served model's rewards"):
        judge.check("p", "r", {"objective": "safety", "min": 0})
    with pytest.raises(
        JudgeSpecError,
        match=r"unknown objective 'humour'; valid objectives: \['helpfulness', 'safety', 'score'\]",
    ):
        judge.check("p", "r", {"objective": "humour", "min": 0}, CONTEXT)


def test_token_length_needs_a_token_count() -> None:
    with pytest.raises(JudgeSpecError, match="needs the response's token count"):
        get_judge("length").check("p", "r", {"unit": "tokens", "max": 3})


@pytest.mark.parametrize(
    ("name", "args", "response"),
    [
        ("sentence_count", {"max": 3}, "!" * 200_000 + "x"),  # was 4.6 s at 20 000
        ("postscript", {"marker": "P.S."}, "\n" * 200_000),  # was 3.7 s at 20 000
        ("section_count", {"splitter": "SECTION", "min": 1}, "\n" * 200_000),
        ("paragraph_count", {"separator": "markdown_divider", "min": 1}, "a" + "\n" * 200_000 + "a"),
    ],
)
def test_built_in_judges_are_linear_on_hostile_text(name: str, args: dict, response: str) -> None:
    """Issue 11: patterns that rescanned runs of '!' or blank lines were quadratic in the response."""
    import time

    judge = get_judge(name)
    started = time.perf_counter()
    judge.check("p", response, args, CONTEXT)
    assert time.perf_counter() - started < 1.0


def test_a_catastrophic_user_regex_fails_its_judge_with_a_reason_in_bounded_time() -> None:
    """Issue 11: `(a|aa)+$` on 60 a's then b runs for ages in `re`; the regex judge stops it per response."""
    import time

    from service.objectives.judges.text import REGEX_TIMEOUT_S

    started = time.perf_counter()
    verdict = get_judge("regex").check("p", "a" * 60 + "b", {"pattern": "(a|aa)+$", "mode": "search", "flags": []},
                                       CONTEXT)
    assert not verdict.passed and "did not finish within" in verdict.reason and "Rewrite the pattern" in verdict.reason
    assert time.perf_counter() - started < REGEX_TIMEOUT_S + 1.5
    assert get_judge("regex").check("p", "aaa", {"pattern": "(a|aa)+$", "mode": "fullmatch", "flags": []},
                                    CONTEXT).passed
