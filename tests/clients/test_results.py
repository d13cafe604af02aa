"""Typed results: named access, positional access, and column views agree with the wire lists."""

from __future__ import annotations

import pytest

from clients.protocol import GroupScores, ItemScore, ScoreResponse
from clients.results import NamedVector, ScoreBatch

NAMES = ["helpsteer-helpfulness", "helpsteer-verbosity", "code-complexity"]


def test_named_vector_is_a_mapping_and_an_array() -> None:
    v = NamedVector(NAMES, [0.5, -1.0, 2.0])
    assert v["helpsteer-verbosity"] == -1.0
    assert v[0] == 0.5 and v[-1] == 2.0 and v[1:] == [-1.0, 2.0]
    assert dict(v) == dict(zip(NAMES, [0.5, -1.0, 2.0], strict=True))
    assert list(v) == NAMES and len(v) == 3 and v.tolist() == [0.5, -1.0, 2.0]
    import numpy as np

    assert np.asarray(v).tolist() == [0.5, -1.0, 2.0]
    with pytest.raises(KeyError, match="objectives are"):
        v["nope"]


def test_named_vector_rejects_misaligned_lists() -> None:
    with pytest.raises(ValueError, match="2 values for 3 objectives"):
        NamedVector(NAMES, [1.0, 2.0])


def _item(score: float) -> ItemScore:
    return ItemScore(
        rewards=[score, 2 * score, 3 * score],
        gating=[0.2, 0.3, 0.5],
        coefficients=[1, 1, 1],
        score=score,
        num_tokens=4,
        weighted=score / 2,
    )


def test_score_batch_columns_follow_input_order() -> None:
    wire = ScoreResponse(
        model="m",
        revision="r",
        objectives=NAMES,
        results=[_item(1.0), _item(2.0)],
        groups=[GroupScores(results=[_item(3.0)], baseline_score=0.5)],
    )
    batch = ScoreBatch.from_wire(wire)
    assert batch.scores == [1.0, 2.0]
    assert batch.objective("helpsteer-verbosity") == [2.0, 4.0]
    assert batch.rewards_matrix == [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]
    assert batch.weighted == [0.5, 1.0]
    assert batch[1].gating["code-complexity"] == 0.5
    assert batch.groups[0].baseline_score == 0.5 and batch.groups[0][0].rewards["code-complexity"] == 9.0
