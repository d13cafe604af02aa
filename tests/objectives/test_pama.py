"""PAMA's closed form: simplex weights, optimality against brute force, stationarity, masks, shapes, ties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.objectives.pama import CASE_ALL_NEGATIVE, CASE_ALL_POSITIVE, CASE_STRADDLE, pama_combine
from service.objectives.validation import ObjectiveInputError

values = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
    st.sampled_from([0.0, 1.0, -1.0]),  # exact zeros and ties must be hit often, not by luck
)
rows = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=1, max_dims=1, min_side=1, max_side=6), elements=values
)
small_rows = hnp.arrays(np.float64, st.integers(1, 4).map(lambda n: (n,)), elements=values)


def simplex_grid(n: int, steps: int = 12) -> np.ndarray:
    """Every point of the simplex with coordinates in multiples of 1/steps (vertices included)."""
    points = [c for c in itertools.product(range(steps + 1), repeat=n) if sum(c) == steps]
    return np.asarray(points, dtype=np.float64) / steps


def reference_row(a: list[float]) -> tuple[float, list[float]]:
    """Theorem 1 written out case by case for one row, as the algorithms reference states it."""
    n, low, high = len(a), min(a), max(a)
    j, k = a.index(low), a.index(high)
    c = [0.0] * n
    if low > 0:
        c[j] = 1.0
        return low, c
    if high < 0:
        c[k] = 1.0
        return high, c
    if 0.0 in a:
        c[a.index(0.0)] = 1.0
        return 0.0, c
    c[j], c[k] = high / (high - low), -low / (high - low)
    return 0.0, c


@given(rows)
def test_weights_lie_on_the_simplex_and_attain_the_combined_advantage(a: np.ndarray) -> None:
    result = pama_combine(a)
    c = result.weights
    assert (c >= 0).all()
    assert c.sum() == pytest.approx(1.0, abs=1e-12)
    scale = max(1.0, float(np.abs(a).max()))
    assert float(c @ a) == pytest.approx(float(result.combined), abs=1e-12 * scale)
    assert float(result.combined) == float(np.clip(0.0, a.min(), a.max()))


@given(small_rows)
def test_combined_advantage_minimises_the_squared_norm_over_the_simplex(a: np.ndarray) -> None:
    result = pama_combine(a)
    grid_values = (simplex_grid(a.size) @ a) ** 2
    # s* is optimal: no feasible c (grid points, vertices included) does better ...
    assert float(result.combined) ** 2 <= grid_values.min() + 1e-9
    # ... and it is attained by the returned weights, which are themselves feasible.
    assert float(result.weights @ a) ** 2 == pytest.approx(float(result.combined) ** 2, abs=1e-9)


@given(rows)
def test_zero_combined_advantage_means_pareto_stationary(a: np.ndarray) -> None:
    # All objectives share the gradient direction g; objective i improves along d iff a_i * (g.d) > 0,
    # and g.d can only be positive or negative. A common improving direction exists iff all a_i > 0
    # or all a_i < 0 — exactly when s* != 0.
    result = pama_combine(a)
    improving_exists = any(bool((a * sign > 0).all()) for sign in (1.0, -1.0))
    if result.combined == 0:
        assert a.min() <= 0 <= a.max()
        assert not improving_exists
        assert result.case == CASE_STRADDLE
    else:
        assert improving_exists
        assert result.case in (CASE_ALL_POSITIVE, CASE_ALL_NEGATIVE)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5), elements=values)
)
@settings(max_examples=60)
def test_any_leading_shape_matches_the_row_by_row_reference(a: np.ndarray) -> None:
    result = pama_combine(a)
    assert result.combined.shape == a.shape[:-1]
    assert result.weights.shape == a.shape
    for index in np.ndindex(a.shape[:-1]):
        s_ref, c_ref = reference_row(a[index].tolist())
        assert result.combined[index] == pytest.approx(s_ref, abs=1e-12)
        np.testing.assert_allclose(result.weights[index], c_ref, atol=1e-12)


def test_cases_and_weights_on_a_worked_example() -> None:
    result = pama_combine([[1.0, 2.0, 3.0], [-1.0, 2.0, -3.0], [0.0, 1.0, -1.0], [-2.0, -1.0, -5.0]])
    np.testing.assert_array_equal(result.combined, [1.0, 0.0, 0.0, -1.0])
    np.testing.assert_allclose(result.weights, [[1, 0, 0], [0, 0.6, 0.4], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(
        result.case, [CASE_ALL_POSITIVE, CASE_STRADDLE, CASE_STRADDLE, CASE_ALL_NEGATIVE]
    )
    np.testing.assert_array_equal(result.index_low, [0, 2, 2, 2])
    np.testing.assert_array_equal(result.index_high, [2, 1, 1, 1])


@pytest.mark.parametrize(
    ("a", "weights"),
    [
        ([2.0, 2.0, 3.0], [1, 0, 0]),  # tied minimum: lowest index
        ([-3.0, -1.0, -1.0], [0, 1, 0]),  # tied maximum: lowest index
        ([-1.0, 0.0, 0.0, 1.0], [0, 1, 0, 0]),  # several zeros: the first one
        ([0.0, 0.0], [1, 0]),
        ([-1.0, -1.0, 1.0, 1.0], [0.5, 0, 0.5, 0]),  # mix of the first argmin and the first argmax
        ([5.0], [1]),
    ],
)
def test_ties_resolve_to_the_lowest_index(a: list[float], weights: list[float]) -> None:
    np.testing.assert_allclose(pama_combine(a).weights, weights)


def test_noon_clip_drops_negative_advantages() -> None:
    result = pama_combine([[0.5, -2.0, 1.0], [0.5, 0.25, 1.0]], noon=True)
    np.testing.assert_array_equal(result.effective, [[0.5, 0.0, 1.0], [0.5, 0.25, 1.0]])
    np.testing.assert_array_equal(result.combined, [0.0, 0.25])
    np.testing.assert_array_equal(result.weights, [[0, 1, 0], [0, 1, 0]])


def test_ratio_mask_zeroes_clipped_rows_only() -> None:
    a = [[0.5, 1.0], [0.5, 1.0], [0.5, 1.0]]
    result = pama_combine(a, ratios=[1.0, 1.2, 1.3], clip_eps=0.2)  # the bound 1 + eps itself is kept
    np.testing.assert_array_equal(result.effective, [[0.5, 1.0], [0.5, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(result.combined, [0.5, 0.5, 0.0])
    np.testing.assert_array_equal(result.weights[2], [1.0, 0.0])


def test_ratios_broadcast_over_objectives_for_token_level_input() -> None:
    a = np.ones((2, 3, 4))
    u = np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 9.0]])
    result = pama_combine(a, noon=True, ratios=u, clip_eps=0.1)
    np.testing.assert_array_equal(result.combined, [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def test_handles_a_4096_by_19_batch_in_one_vectorised_call() -> None:
    a = np.random.default_rng(0).normal(size=(4096, 19))
    result = pama_combine(a)
    assert result.combined.shape == (4096,)
    assert result.weights.shape == (4096, 19)
    np.testing.assert_allclose(result.weights.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose((result.weights * a).sum(-1), result.combined, atol=1e-12)


def test_extreme_magnitudes_do_not_overflow_the_mix() -> None:
    result = pama_combine([-1e308, 1e308])
    np.testing.assert_allclose(result.weights, [0.5, 0.5])
    assert result.combined == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"advantages": [[1.0, 2.0], [1.0, 2.0, 3.0]]},
            r"advantages\[1\] has length 3, expected 2 \(ragged\)",
        ),
        ({"advantages": [[1.0, 2.0], [1.0, float("nan")]]}, r"advantages\[1\]\[1\] is NaN"),
        ({"advantages": [[1.0, float("inf")]]}, r"advantages\[0\]\[1\] is infinite"),
        ({"advantages": [[1.0, "2"]]}, r"advantages\[0\]\[1\] is a str"),
        ({"advantages": [[1.0, None]]}, r"advantages\[0\]\[1\] is a NoneType"),
        ({"advantages": [[1.0], 2.0]}, r"advantages\[1\] is a float but .*ragged nesting"),
        ({"advantages": [True, False]}, r"advantages\[0\] is a bool"),
        ({"advantages": []}, "empty last axis"),
        ({"advantages": 3.0}, "nested at least 1 deep"),
        ({"advantages": [[1.0, 2.0]], "ratios": [1.0, 1.0]}, r"ratios has shape \[2\] .* shape \[1\]"),
        ({"advantages": [[1.0], [2.0]], "ratios": [1.0, -0.5]}, r"ratios\[1\] is -0.5.*not the log-ratio"),
        ({"advantages": [1.0], "ratios": 1.0, "clip_eps": -0.1}, "clip_eps must be >= 0"),
        ({"advantages": [1.0], "ratios": 1.0, "clip_eps": float("nan")}, "clip_eps must be a finite number"),
    ],
)
def test_bad_input_is_rejected_with_the_offending_index(kwargs: dict, message: str) -> None:
    with pytest.raises(ObjectiveInputError, match=message):
        pama_combine(**kwargs)
