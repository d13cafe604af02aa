"""The splitting plan: every chunk fits the limits, and merging puts every answer back in place."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients._plan import dump_request, merge_score, plan_list, plan_score
from clients.errors import BadRequest
from clients.protocol import GroupScores, ItemScore, ScoreGroup, ScoreItem, ScoreRequest, ScoreResponse

text = st.text(alphabet="abcdé xyz", min_size=0, max_size=40)
items = st.lists(st.builds(lambda p, r: ScoreItem(prompt=p, response=r), text, text), max_size=12)
groups = st.lists(
    st.builds(lambda p, rs: ScoreGroup(prompt=p, responses=rs), text, st.lists(text, min_size=1, max_size=9)),
    max_size=5,
)

baseline = st.none() | text
items_with_baselines = st.lists(
    st.builds(lambda p, r, b: ScoreItem(prompt=p, response=r, baseline=b), text, text, baseline), max_size=12
)
groups_with_baselines = st.lists(
    st.builds(lambda p, rs, b: ScoreGroup(prompt=p, responses=rs, baseline=b), text,
              st.lists(text, min_size=1, max_size=9), baseline),
    max_size=5,
)


def _answer_for(request: ScoreRequest) -> ScoreResponse:
    """A fake server answer whose score encodes the response text, to check where it lands."""

    def item(response: str) -> ItemScore:
        return ItemScore(
            rewards=[float(len(response))],
            gating=[1.0],
            coefficients=[1.0],
            score=hash(response) % 1000,
            num_tokens=len(response),
        )

    return ScoreResponse(
        model="m",
        revision="r",
        objectives=["o"],
        results=[item(i.response or "") for i in request.items],
        groups=[GroupScores(results=[item(r) for r in g.responses]) for g in request.groups],
    )


@settings(max_examples=60, deadline=None)
@given(items=items, groups=groups, max_items=st.integers(1, 7), min_chunks=st.integers(1, 3))
def test_chunks_fit_limits_and_merge_restores_order(items, groups, max_items, min_chunks) -> None:
    request = ScoreRequest(items=items, groups=groups, weights=[1.0])
    max_bytes = 400
    chunks = plan_score(request, max_items, max_bytes, min_chunks)
    for chunk in chunks:
        assert chunk.request.num_conversations() <= max_items
        body = json.dumps(dump_request(chunk.request), separators=(",", ":"), ensure_ascii=False).encode()
        assert len(body) <= max_bytes
        assert chunk.request.weights == [1.0]
    merged = merge_score(request, chunks, [_answer_for(c.request) for c in chunks])
    direct = _answer_for(request)
    assert merged.results == direct.results
    assert [g.results for g in merged.groups] == [g.results for g in direct.groups]


def test_single_item_over_the_body_limit_is_refused_before_sending() -> None:
    request = ScoreRequest(items=[ScoreItem(prompt="p", response="x" * 500)])
    with pytest.raises(BadRequest, match="item 0 alone is .* max_body_bytes \\(300\\)"):
        plan_score(request, 10, 300)


def test_merge_refuses_a_short_answer() -> None:
    request = ScoreRequest(items=[ScoreItem(prompt="p", response="a"), ScoreItem(prompt="p", response="b")])
    chunks = plan_score(request, 10, 10_000)
    short = _answer_for(ScoreRequest(items=request.items[:1]))
    with pytest.raises(Exception, match="answered 1 items for 2 sent"):
        merge_score(request, chunks, [short])


def test_plan_list_keeps_order_within_count() -> None:
    pieces = plan_list(list("abcdefg"), 3, 10_000, 2)
    assert pieces == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert plan_list([], 3, 100, 2) == [[]]


@settings(max_examples=60, deadline=None)
@given(items=items_with_baselines, groups=groups_with_baselines, max_items=st.integers(2, 7))
def test_cgpo_baselines_count_against_the_item_limit(items, groups, max_items) -> None:
    """A baseline is a forward: the server counts it (issue 11), so every chunk must too."""
    request = ScoreRequest(items=items, groups=groups)
    chunks = plan_score(request, max_items, 10_000)
    assert all(chunk.request.num_conversations() <= max_items for chunk in chunks)
    merged = merge_score(request, chunks, [_answer_for(c.request) for c in chunks])
    assert merged.results == _answer_for(request).results


def test_an_item_and_its_baseline_over_a_limit_of_one_says_so() -> None:
    request = ScoreRequest(items=[ScoreItem(prompt="p", response="r", baseline="b")])
    with pytest.raises(BadRequest, match="with its CGPO baseline is 2 conversations"):
        plan_score(request, 1, 10_000)
