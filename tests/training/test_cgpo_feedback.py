"""`TaskFeedback` with a hand-written fake client: calibration on an objective, trainer-side reward judges."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from service.training.cgpo_config import CgpoConfig
from service.training.cgpo_feedback import TaskFeedback
from service.training.config import ConfigError


@dataclass
class _Group:
    rewards_matrix: list[list[float]]
    scores: list[float]
    calibrated: list[float | None]


@dataclass
class _Verdict:
    passed: bool


@dataclass
class _Item:
    results: list[_Verdict]
    all_passed: bool


@dataclass
class _Judge:
    name: str


class FakeClient:
    """Objective a = number of characters, b = 0; score = -chars; rule judge passes iff the text is lowercase."""

    def __init__(self) -> None:
        self.score_requests: list[list[dict[str, Any]]] = []
        self.judge_requests: list[list[dict[str, Any]]] = []

    def judges(self) -> list[_Judge]:
        return [_Judge("all_lowercase"), _Judge("reward_threshold")]

    def score_groups(self, request: list[dict[str, Any]]) -> list[_Group]:
        self.score_requests.append(request)
        out = []
        for group in request:
            base = group.get("baseline")
            calibrated = [1 / (1 + math.exp(len(r) - len(base))) if base is not None else None for r in group["responses"]]
            out.append(_Group([[float(len(r)), 0.0] for r in group["responses"]],
                              [-float(len(r)) for r in group["responses"]], calibrated))  # fmt: skip
        return out

    def judge(self, items: list[dict[str, Any]]) -> list[_Item]:
        self.judge_requests.append(items)
        return [_Item([_Verdict(i["response"].islower())] * len(i["judges"]), i["response"].islower()) for i in items]


def _feedback() -> tuple[FakeClient, TaskFeedback]:
    client = FakeClient()
    return client, TaskFeedback(client, ("a", "b"), lambda call: call())  # type: ignore[arg-type]


def _task(reward: str, judges: list[dict[str, Any]]) -> Any:
    return CgpoConfig(judges=judges, reward=reward, k=2).tasks[0]


def test_objective_reward_is_calibrated_against_the_baseline_sent_as_the_last_response() -> None:
    client, feedback = _feedback()
    task = _task("a", [{"name": "all_lowercase"}])
    scored = feedback.score(task, [[{"role": "user", "content": "q"}]], [["abc", "a"]], ["ab"])
    assert client.score_requests[0][0]["responses"] == ["abc", "a", "ab"]  # one extra forward per prompt
    assert "baseline" not in client.score_requests[0][0]
    assert scored.calibrated[0].tolist() == pytest.approx([1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1))])
    assert scored.rewards.values.shape == (1, 2, 2)  # the baseline is not a sample


def test_gated_score_uses_the_services_baseline_field() -> None:
    client, feedback = _feedback()
    scored = feedback.score(_task("score", [{"name": "all_lowercase"}]), ["q"], [["abc", "a"]], ["ab"])
    assert client.score_requests[0][0]["baseline"] == "ab"
    assert scored.calibrated.shape == (1, 2)


def test_reward_threshold_runs_in_the_trainer_and_rule_judges_on_the_service() -> None:
    client, feedback = _feedback()
    task = _task("a", [{"name": "all_lowercase"}, {"name": "reward_threshold", "args": {"objective": "a", "max": 2}}])
    texts = [["abc", "Ab"], ["x", "yz"]]
    scored = feedback.score(task, ["q", "r"], texts, ["", ""])
    verdicts = feedback.judge(task, ["q", "r"], texts, scored.rewards)
    assert verdicts.tolist() == [[[True, False], [False, True]], [[True, True], [True, True]]]
    assert all(i["judges"] == [{"name": "all_lowercase", "args": {}}] for i in client.judge_requests[0])
    assert np.asarray(verdicts.all(-1)).tolist() == [[False, False], [True, True]]


def test_validation_names_the_fix() -> None:
    _, feedback = _feedback()
    with pytest.raises(ConfigError, match="not offered by the service"):
        feedback.validate([_task("a", [{"name": "word_count", "args": {"max": 2}}])])
    with pytest.raises(ConfigError, match="not a service output"):
        feedback.validate([_task("c", [{"name": "all_lowercase"}])])
    with pytest.raises(ConfigError, match="bad args"):
        feedback.validate([_task("a", [{"name": "reward_threshold", "args": {"objective": "a"}}])])
