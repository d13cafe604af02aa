"""Reward and gate positions reproduce the reference's loop and argmax exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from service.model import (
    GatePatternNotFound,
    ModelInputError,
    gate_position,
    gate_positions,
    reward_position,
    reward_positions,
)


def reference_find_token_for_gating(lst: list[int], pattern: list[int]) -> int:
    """The model card's loop, generalised from 5 to len(pattern)."""
    n = len(pattern)
    for j in range(len(lst) - n, -1, -1):
        if lst[j : j + n] == pattern:
            return j
    raise ValueError("Token pattern not found in the list.")


def ref_or_none(lst: list[int], pattern: list[int]) -> int | None:
    try:
        return reference_find_token_for_gating(lst, pattern)
    except ValueError:
        return None


ids_lists = st.lists(st.integers(0, 3), min_size=0, max_size=40)
patterns = st.lists(st.integers(0, 3), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(ids=ids_lists, pattern=patterns)
def test_gate_position_matches_reference_loop(ids: list[int], pattern: list[int]) -> None:
    expected = ref_or_none(ids, pattern)
    if expected is None:
        with pytest.raises(GatePatternNotFound):
            gate_position(ids, pattern)
    else:
        assert gate_position(ids, pattern) == expected
        assert gate_position(torch.tensor(ids), pattern) == expected


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(st.integers(0, 3), min_size=12, max_size=12), min_size=1, max_size=5))
def test_batched_gate_positions_match_rows(rows: list[list[int]]) -> None:
    pattern = [1, 2]
    rows = [r[:5] + pattern + r[7:] for r in rows]  # guarantee at least one hit per row
    got = gate_positions(torch.tensor(rows), pattern)
    assert got.tolist() == [reference_find_token_for_gating(r, pattern) for r in rows]


def test_last_occurrence_wins_and_match_may_end_the_row() -> None:
    pattern = [7, 8, 9]
    assert gate_position([7, 8, 9, 0, 7, 8, 9], pattern) == 4
    assert gate_positions(torch.tensor([[7, 8, 9, 0, 7, 8, 9]]), pattern).tolist() == [4]
    with pytest.raises(GatePatternNotFound):
        gate_position([7, 8], pattern)  # shorter than the pattern
    with pytest.raises(GatePatternNotFound):
        gate_position([0, 0, 7, 8], pattern)  # a partial match at the end does not count


def test_batched_error_names_the_failing_row() -> None:
    ids = torch.tensor([[1, 2, 0, 0], [0, 0, 0, 0], [0, 1, 2, 0]])
    with pytest.raises(GatePatternNotFound, match="row 1") as info:
        gate_positions(ids, [1, 2])
    assert info.value.row == 1
    assert "assistant turn" in str(info.value) and "[1, 2]" in str(info.value)
    assert isinstance(info.value, ModelInputError) and isinstance(info.value, ValueError)


def reference_reward_index(row: list[int], pad: int) -> int:
    first = row.index(pad) if pad in row else 0  # argmax of an all-False row is 0
    return (first - 1) % len(row)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([5, 6, 7, 8], 3),  # no pad: last token
        ([5, 6, 9, 9], 1),  # right padding: last real token
        ([9, 9, 5, 6], 3),  # left padding: first pad at 0 wraps to the last token
        ([5, 9, 6, 9], 0),  # the *first* pad decides, as in the reference
    ],
)
def test_reward_position_is_token_before_first_pad(row: list[int], expected: int) -> None:
    assert reward_position(row, 9) == expected == reference_reward_index(row, 9)


def test_batched_reward_positions_match_rows() -> None:
    rows = [[5, 6, 7, 8], [5, 6, 9, 9], [9, 9, 5, 6], [5, 9, 6, 9]]
    assert reward_positions(torch.tensor(rows), 9).tolist() == [reward_position(r, 9) for r in rows]


def test_without_pad_id_only_single_rows_are_accepted() -> None:
    assert reward_positions(torch.tensor([[1, 2, 3]]), None).tolist() == [2]
    with pytest.raises(ModelInputError, match="pad_token_id"):
        reward_positions(torch.tensor([[1, 2, 3], [1, 2, 3]]), None)
    with pytest.raises(ModelInputError, match="empty"):
        reward_position([], 0)
