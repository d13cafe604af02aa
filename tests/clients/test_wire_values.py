"""The wire's value check (`clients.wire_values`), and the client refusing such values before sending."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fake_service import FAST_RETRY, FakeRewardService

from clients import AsyncRewardClient, BadRequest, RewardClient
from clients.wire_values import MAX_JSON_DEPTH, first_invalid_value


def test_good_values_pass_including_astral_characters() -> None:
    body = {"items": [{"prompt": "emoji \U0001f600 é", "response": "ok"}], "weights": [1, -2.5, 0, 10**300]}
    assert first_invalid_value(body) is None


@pytest.mark.parametrize(
    ("body", "path", "needle"),
    [
        ({"items": [{"prompt": "a", "response": "b\ud800"}]}, "items[0].response", "surrogate (\\ud800"),
        ({"query": ["fine", "\udfff"]}, "query[1]", "surrogate (\\udfff"),
        ({"args": {"bad\udc00key": 1}}, "args key", "surrogate (\\udc00"),
        ({"advantages": [[1.0, 10**400]]}, "advantages[0][1]", "too large for a 64-bit float"),
        ({"direction": [float("nan")]}, "direction[0]", "NaN"),
        ({"ratios": [float("inf")]}, "ratios[0]", "infinite"),
    ],
)
def test_bad_values_are_named_by_path(body: object, path: str, needle: str) -> None:
    problem = first_invalid_value(body)
    assert problem is not None and problem.startswith(path + ":") and needle in problem


def test_depth_is_bounded_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(50_000):  # far past the interpreter's recursion limit
        deep = [deep]
    problem = first_invalid_value({"x": deep})
    assert problem is not None and f"more than {MAX_JSON_DEPTH} levels" in problem
    shallow: list[object] = [1.0]
    for _ in range(MAX_JSON_DEPTH - 2):
        shallow = [shallow]
    assert first_invalid_value({"x": shallow}) is None


def test_the_client_raises_bad_request_and_sends_nothing() -> None:
    fake = FakeRewardService()
    with RewardClient("http://rm", transport=httpx.MockTransport(fake), retry=FAST_RETRY) as rc:
        with pytest.raises(BadRequest, match=r"items\[1\]\.response: .*surrogate"):
            rc.score_pairs(["a", "b"], ["fine", "x\ud800"])
        with pytest.raises(BadRequest, match=r"groups\[0\]\.responses\[1\]"):
            rc.score_groups([{"prompt": "p", "responses": ["x", "\udc00"]}])
        with pytest.raises(BadRequest, match=r"query\[0\]"):
            rc.get_reward(["\ud800"])
        with pytest.raises(BadRequest, match=r"advantages\[0\]\[1\]: the number is NaN"):
            rc.pama_weights([[1.0, float("nan")]])
        with pytest.raises(BadRequest, match=r"direction\[0\]"):
            rc.score_pairs(["a"], ["b"], direction=[float("inf"), 1, 0])
    assert fake.scored == []


def test_the_async_client_raises_bad_request_too() -> None:
    async def main() -> None:
        async with AsyncRewardClient("http://rm", transport=httpx.MockTransport(FakeRewardService()),
                                     retry=FAST_RETRY) as rc:
            with pytest.raises(BadRequest, match=r"items\[0\]\.prompt"):
                await rc.score_pairs(["\ud800"], ["b"])

    asyncio.run(main())
