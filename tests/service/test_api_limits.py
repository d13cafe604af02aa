"""Limits are what the README says (issue 11, "limits looser than documented"), over real HTTP.

The test service: --max-items-per-request 64, --max-batch-tokens 4096, --max-input-tokens 256.
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.test_api_errors import error_of


def test_cgpo_baselines_count_against_max_items_per_request(http: httpx.Client) -> None:
    items = [{"prompt": f"p{i}", "response": "r", "baseline": "b"} for i in range(33)]  # 66 forwards
    message = error_of(http.post("/v1/score", json={"items": items}), 413, "payload_too_large")
    assert "66 conversations" in message and "baselines" in message and "64" in message
    group = {"prompt": "p", "responses": ["r"] * 64, "baseline": "b"}  # 65 forwards
    error_of(http.post("/v1/score", json={"groups": [group]}), 413, "payload_too_large")
    assert http.post("/v1/score", json={"items": items[:32]}).status_code == 200


def test_a_group_over_the_forward_budget_is_split_and_scores_as_items_do(http: httpx.Client) -> None:
    prompt = "Write a long answer about the weather. " * 8
    responses = [f"Answer {k}: " + "sunny and warm " * 8 for k in range(60)]  # 60 x ~200 tokens
    grouped = http.post("/v1/score", json={"groups": [{"prompt": prompt, "responses": responses}]})
    assert grouped.status_code == 200, grouped.text
    results = grouped.json()["groups"][0]["results"]
    assert sum(r["num_tokens"] for r in results) > 2 * 4096
    alone = http.post("/v1/score", json={"items": [{"prompt": prompt, "response": r} for r in responses[:3]]})
    for got, want in zip(results[:3], alone.json()["results"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert got["rewards"] == pytest.approx(want["rewards"], abs=1e-5)
