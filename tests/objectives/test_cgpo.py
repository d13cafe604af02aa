"""CGPO calibration: a stable sigmoid of reward differences, and one baseline forward per prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.objectives.cgpo import calibrated_reward, plan_baselines
from service.objectives.validation import ObjectiveInputError


def test_calibrated_reward_is_the_sigmoid_of_the_difference() -> None:
    assert calibrated_reward(1.0, 1.0) == 0.5
    assert calibrated_reward(2.0, 0.5) == pytest.approx(1 / (1 + math.exp(-1.5)))
    np.testing.assert_allclose(calibrated_reward([0.0, 3.0], 1.0), [1 / (1 + math.e), 1 / (1 + math.exp(-2))])


def test_calibrated_reward_does_not_overflow_at_extremes() -> None:
    with np.errstate(over="raise", invalid="raise"):  # an overflow or NaN would raise here
        values = calibrated_reward([1000.0, -1000.0, 0.0], 0.0)
    np.testing.assert_array_equal(values, [1.0, 0.0, 0.5])
    assert 0.0 < calibrated_reward(-700.0, 0.0) < 1e-300


def test_calibrated_reward_broadcasts_a_per_group_baseline() -> None:
    rewards = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    baselines = np.array([[2.0], [0.0]])
    np.testing.assert_allclose(calibrated_reward(rewards, baselines)[1], [0.5, 0.5, 0.5])
    with pytest.raises(
        ObjectiveInputError, match=r"shape \[2, 3\] and baseline_reward shape \[2\] do not broadcast"
    ):
        calibrated_reward(rewards, [1.0, 2.0])
    with pytest.raises(ObjectiveInputError, match=r"baseline_reward\[1\] is NaN"):
        calibrated_reward([1.0, 2.0], [1.0, float("nan")])


def test_baseline_plan_needs_one_forward_per_distinct_prompt_and_baseline() -> None:
    prompts = ["p1", "p1", "p1", "p2", "p2", "p3"]
    baselines = ["b1", "b1", "b1", "b2", "b2", None]
    plan = plan_baselines(prompts, baselines)
    assert plan.pairs == (("p1", "b1"), ("p2", "b2"))
    assert plan.index == (0, 0, 0, 1, 1, None)
    assert plan.scatter([0.25, -1.0]) == [0.25, 0.25, 0.25, -1.0, -1.0, None]
    with pytest.raises(ObjectiveInputError, match="got 1 baseline rewards for 2 baseline pairs"):
        plan.scatter([0.25])


def test_same_baseline_text_under_different_prompts_is_scored_separately() -> None:
    plan = plan_baselines(["p1", "p2"], ["same", "same"])
    assert plan.pairs == (("p1", "same"), ("p2", "same"))


def test_baseline_plan_length_mismatch() -> None:
    with pytest.raises(ObjectiveInputError, match="got 2 prompts but 1 baselines"):
        plan_baselines(["a", "b"], ["x"])
