"""Whatever a caller passes, the client raises its own errors (issue 11), never pydantic's or a KeyError.

Hypothesis throws arbitrary values at every public method of `RewardClient` over the fake service. The
one deliberate exception is a `TypeError` for a bare string where a list goes (a programming error,
named as such, as Python does).
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from fake_service import FAST_RETRY, FakeRewardService
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients import BadRequest, RewardClient, RewardServiceError

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(["\ud800", 10**400, math.inf, object()]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
METHODS = {
    "score_pairs": lambda rc, a, b: rc.score_pairs(a, b),
    "score_pairs_weights": lambda rc, a, b: rc.score_pairs(["p"], ["r"], weights=a),
    "score_groups": lambda rc, a, b: rc.score_groups(a),
    "get_reward": lambda rc, a, b: rc.get_reward(a),
    "judge": lambda rc, a, b: rc.judge(a),
    "pama_weights": lambda rc, a, b: rc.pama_weights(a, ratios=b),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_arbitrary_input_raises_only_the_clients_errors(method: str) -> None:
    with RewardClient("http://rm", transport=httpx.MockTransport(FakeRewardService()), retry=FAST_RETRY) as rc:

        @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(first=anything, second=anything)
        def attack(first: Any, second: Any) -> None:
            try:
                METHODS[method](rc, first, second)
            except RewardServiceError:
                pass
            except TypeError as error:  # only the named "a string, not a list" programming error
                assert "not one string" in str(error) or "not a string" in str(error), repr(error)

        attack()


def test_messages_without_content_name_the_pair() -> None:
    with RewardClient("http://rm", transport=httpx.MockTransport(FakeRewardService()), retry=FAST_RETRY) as rc:
        with pytest.raises(BadRequest, match=r"invalid pair 1: missing key 'content'"):
            rc.score_pairs(["ok", [{"role": "user"}]], ["a", "b"])
