"""DPA directions: normalisation, subsets by name, the angle form, errors, and the exact system prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.objectives.directions import (
    Direction,
    DirectionError,
    direction_from_angle,
    render_dpa_system_prompt,
    weights_vector,
)

NAMES = ("helpfulness", "correctness", "verbosity")
README_PREFIX = (
    "You are a helpful, respectful, and honest assistant who always responds to the user in a harmless way. "
    "Your response should maximize weighted rating = "
)


def test_list_directions_are_normalised_to_unit_length() -> None:
    d = Direction.parse([3.0, 0.0, 4.0], NAMES)
    assert d.components == pytest.approx((0.6, 0.0, 0.8))
    assert float(np.linalg.norm(d.vector)) == pytest.approx(1.0)


def test_dict_over_a_subset_lives_in_the_full_objective_space() -> None:
    d = Direction.parse({"verbosity": -1.0, "helpfulness": 1.0}, NAMES)
    assert d.names == NAMES
    assert d.components == pytest.approx((math.sqrt(0.5), 0.0, -math.sqrt(0.5)))
    assert d.as_dict() == pytest.approx({"helpfulness": math.sqrt(0.5), "verbosity": -math.sqrt(0.5)})
    assert set(d.as_dict(include_zero=True)) == set(NAMES)


def test_project_is_the_preference_conditioned_reward() -> None:
    d = Direction.parse({"helpfulness": 0.8, "verbosity": 0.6}, NAMES)
    rewards = np.array([[10.0, 99.0, 20.0], [0.0, 1.0, 5.0]])
    np.testing.assert_allclose(d.project(rewards), [0.8 * 10 + 0.6 * 20, 0.6 * 5])
    with pytest.raises(DirectionError, match="rewards have 2 objectives .* the direction has 3"):
        d.project(np.zeros((4, 2)))


def test_huge_components_are_normalised_without_overflow() -> None:
    d = Direction.parse([1e300, 1e300, 0.0], NAMES)
    assert d.components == pytest.approx((math.sqrt(0.5), math.sqrt(0.5), 0.0))


def test_angle_form_gives_cos_and_sin() -> None:
    d = direction_from_angle(math.atan2(0.6, 0.8))
    assert d.names == ("helpfulness", "verbosity")
    assert d.components == pytest.approx((0.8, 0.6))
    full = direction_from_angle(-30, ("helpfulness", "verbosity"), degrees=True, objective_names=NAMES)
    assert full.components == pytest.approx((math.cos(math.radians(30)), 0.0, -0.5))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([0.0, 0.0, 0.0], "zero vector"),
        ({"helpfulness": 0.0}, "zero vector"),
        ([1.0, 2.0], r"direction has shape \[2\], expected a flat list of 3 numbers"),
        ([[1.0, 2.0, 3.0]], r"direction has shape \[1, 3\]"),
        ([1.0, float("nan"), 0.0], r"direction\[1\] is NaN"),
        ({"helpfulness": float("inf")}, r"direction\['helpfulness'\] is inf"),
        ({"helpfulness": "1"}, r"direction\['helpfulness'\] is a str"),
        (
            {"humour": 1.0},
            r"unknown objective\(s\) \['humour'\]; valid names: \['helpfulness', 'correctness'",
        ),
        ({}, "empty dict"),
    ],
)
def test_invalid_directions_say_what_is_wrong(spec: object, message: str) -> None:
    with pytest.raises(DirectionError, match=message):
        Direction.parse(spec, NAMES)  # type: ignore[arg-type]


def test_angle_errors() -> None:
    with pytest.raises(DirectionError, match="finite number"):
        direction_from_angle(float("nan"))
    with pytest.raises(DirectionError, match="two distinct objective names"):
        direction_from_angle(0.1, ("helpfulness", "helpfulness"))
    with pytest.raises(DirectionError, match="unknown objective"):
        direction_from_angle(0.1, ("helpfulness", "humour"), objective_names=NAMES)


def test_weights_vector_keeps_the_callers_scale() -> None:
    np.testing.assert_array_equal(weights_vector([2.0, 0.0, -1.0], NAMES), [2.0, 0.0, -1.0])
    np.testing.assert_array_equal(weights_vector({"verbosity": 0.5}, NAMES), [0.0, 0.0, 0.5])
    with pytest.raises(DirectionError, match="all zero"):
        weights_vector([0, 0, 0], NAMES)
    with pytest.raises(DirectionError, match=r"weights names unknown objective\(s\) \['x'\]"):
        weights_vector({"x": 1.0}, NAMES)


@pytest.mark.parametrize(
    ("degrees", "w_h", "w_v"),
    [(0, 100, 0), (36.87, 80, 60), (45, 71, 71), (-45, 71, -71), (30, 87, 50)],
)
def test_dpa_prompt_matches_the_readme_for_two_objectives(degrees: float, w_h: int, w_v: int) -> None:
    d = direction_from_angle(degrees, degrees=True)
    expected = README_PREFIX + f"helpfulness*{w_h} + verbosity*{w_v}"
    assert render_dpa_system_prompt(d, include_zero=True) == expected


def test_dpa_prompt_uses_labels_and_skips_unused_objectives() -> None:
    names = ("helpsteer-helpfulness", "helpsteer-correctness", "helpsteer-verbosity")
    d = direction_from_angle(
        36.87, ("helpsteer-helpfulness", "helpsteer-verbosity"), degrees=True, objective_names=names
    )
    labels = {"helpsteer-helpfulness": "helpfulness", "helpsteer-verbosity": "verbosity"}
    assert render_dpa_system_prompt(d, labels) == README_PREFIX + "helpfulness*80 + verbosity*60"
    with pytest.raises(DirectionError, match=r"labels name unknown objectives \['nope'\]"):
        render_dpa_system_prompt(d, {"nope": "x"})


def test_dpa_prompt_for_k_objectives_repeats_the_term() -> None:
    d = Direction.parse([2.0, 1.0, 2.0], NAMES)
    assert render_dpa_system_prompt(d) == README_PREFIX + "helpfulness*67 + correctness*33 + verbosity*67"
