"""PAMA weights and CGPO judges over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np


def test_pama_weights_nested_shapes(http: httpx.Client) -> None:
    advantages = [[[0.5, 0.2, 0.9], [-0.3, 0.4, 0.1]], [[-1.0, -0.5, -2.0], [0.0, 0.3, 0.2]]]
    body = http.post("/v1/pama/weights", json={"advantages": advantages}).json()
    combined, weights = np.array(body["combined"]), np.array(body["weights"])
    assert combined.shape == (2, 2) and weights.shape == (2, 2, 3)
    np.testing.assert_allclose(combined, [[0.2, 0.0], [-0.5, 0.0]])
    np.testing.assert_allclose(weights.sum(-1), 1.0)
    np.testing.assert_allclose((weights * np.array(advantages)).sum(-1), combined, atol=1e-12)
    noon = http.post("/v1/pama/weights", json={"advantages": advantages, "noon": True,
                                                 "ratios": [[1.0, 1.0], [1.0, 5.0]], "clip_eps": 0.2}).json()
    np.testing.assert_allclose(noon["combined"], [[0.2, 0.0], [0.0, 0.0]])


def test_pama_bad_input_names_the_index(http: httpx.Client) -> None:
    ragged = http.post("/v1/pama/weights", json={"advantages": [[0.1, 0.2], [0.3]]})
    assert ragged.status_code == 422 and "advantages[1]" in ragged.json()["error"]["message"]
    nan = http.post("/v1/pama/weights", content='{"advantages": [[0.1, NaN]]}',
                    headers={"content-type": "application/json"})
    assert nan.status_code == 422 and "advantages[0][1]" in nan.json()["error"]["message"]


def test_judges_listing_and_evaluation(http: httpx.Client) -> None:
    listing = http.get("/v1/judges").json()["judges"]
    names = {judge["name"] for judge in listing}
    assert {"word_count", "json_format", "math_answer", "refusal", "reward_threshold"} <= names
    assert len(names) >= 15 and all(judge["args_schema"]["type"] == "object" for judge in listing)
    item = {
        "prompt": "What is 6 x 7? Put the answer in a box.",
        "response": "The answer is \\boxed{42}.",
        "judges": [
            {"name": "math_answer", "args": {"answer": "42"}},
            {"name": "no_commas"},
            {"name": "reward_threshold", "args": {"objective": "helpsteer-helpfulness", "min": -1000}},
        ],
    }
    failing = {**item, "response": "It is 41, I think.", "judges": item["judges"][:2]}
    body = http.post("/v1/judge", json={"items": [item, failing]}).json()
    first, second = body["results"]
    assert first["all_passed"] is True and [r["passed"] for r in first["results"]] == [True, True, True]
    assert "helpsteer-helpfulness" in first["results"][2]["reason"]
    assert second["all_passed"] is False
    assert second["results"][0]["passed"] is False and second["results"][1]["passed"] is False
    assert second["results"][0]["reason"] and second["results"][1]["reason"]


def test_unknown_judge_or_bad_args_is_a_422_listing_valid_ones(http: httpx.Client) -> None:
    unknown = http.post("/v1/judge", json={"items": [{"prompt": "p", "response": "r",
                                                        "judges": [{"name": "vibes"}]}]})
    assert unknown.status_code == 422
    message = unknown.json()["error"]["message"]
    assert "vibes" in message and "word_count" in message and message.startswith("items[0]")
    bad_args = http.post("/v1/judge", json={"items": [{"prompt": "p", "response": "r",
                                                         "judges": [{"name": "word_count", "args": {"min": "x"}}]}]})
    assert bad_args.status_code == 422 and "word_count" in bad_args.json()["error"]["message"]
    bad_objective = http.post("/v1/judge", json={"items": [{"prompt": "p", "response": "r", "judges": [
        {"name": "reward_threshold", "args": {"objective": "nope", "min": 0}}]}]})
    assert bad_objective.status_code == 422 and "helpsteer-helpfulness" in bad_objective.json()["error"]["message"]
