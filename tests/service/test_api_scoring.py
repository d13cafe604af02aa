"""`/v1/score` over real HTTP: numbers equal the model's own forward, every input form agrees."""

from __future__ import annotations

import math

import httpx
import numpy as np
import torch

from service.model.attention_plans import kernels_here

CHAT = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Write a haiku about rain.", "Rain taps on the glass\nsoft grey clouds drift slowly by\npuddles hold the sky"),
    ("Say hi.", "Hi!"),
]


def direct_forward(loaded, messages_list):  # type: ignore[no-untyped-def]
    """The model's own forward on one conversation at a time (no service code involved)."""
    rows = []
    for messages in messages_list:
        text = loaded.tokenizer.apply_chat_template(messages, tokenize=False)
        ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = loaded.model(ids)
        rows.append((out.rewards[0].numpy(), out.gating[0].numpy(), out.coefficients[0].numpy(), float(out.score[0])))
    return rows


def as_messages(prompt: str, response: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def test_scores_match_direct_model_output(http: httpx.Client, loaded_model) -> None:  # type: ignore[no-untyped-def]
    answer = http.post("/v1/score", json={"items": [{"prompt": p, "response": r} for p, r in CHAT]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["objectives"] == list(loaded_model.model.objective_names)
    assert body["revision"] == loaded_model.revision
    expected = direct_forward(loaded_model, [as_messages(p, r) for p, r in CHAT])
    for result, (rewards, gating, coefficients, score) in zip(body["results"], expected, strict=True):
        np.testing.assert_allclose(result["rewards"], rewards, atol=1e-5)
        np.testing.assert_allclose(result["gating"], gating, atol=1e-5)
        np.testing.assert_allclose(result["coefficients"], coefficients, atol=1e-5)
        assert math.isclose(result["score"], score, abs_tol=1e-5)
        assert result["num_tokens"] > 0 and result["weighted"] is None and result["calibrated"] is None


def test_prompt_response_messages_and_group_forms_agree(http: httpx.Client) -> None:
    prompt = "Name three colours."
    responses = ["Red, green and blue.", "Cyan.", "I like turtles."]
    pairs = http.post("/v1/score", json={"items": [{"prompt": prompt, "response": r} for r in responses]}).json()
    messages = http.post(
        "/v1/score", json={"items": [{"messages": as_messages(prompt, r)} for r in responses]}
    ).json()
    group = http.post("/v1/score", json={"groups": [{"prompt": prompt, "responses": responses}]}).json()
    for a, b, c in zip(pairs["results"], messages["results"], group["groups"][0]["results"], strict=True):
        assert a["num_tokens"] == b["num_tokens"] == c["num_tokens"]
        np.testing.assert_allclose(a["rewards"], b["rewards"], atol=1e-5)
        np.testing.assert_allclose(a["rewards"], c["rewards"], atol=1e-5)
        np.testing.assert_allclose(a["gating"], c["gating"], atol=1e-5)
        assert math.isclose(a["score"], c["score"], abs_tol=1e-5)


def test_multi_turn_and_system_prompt(http: httpx.Client) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye!"},
    ]
    as_prompt = http.post(
        "/v1/score", json={"items": [{"prompt": conversation[:-1], "response": "Goodbye!"}]}
    ).json()["results"][0]
    as_messages_form = http.post("/v1/score", json={"items": [{"messages": conversation}]}).json()["results"][0]
    assert math.isclose(as_prompt["score"], as_messages_form["score"], abs_tol=1e-5)


def test_weights_and_direction(http: httpx.Client) -> None:
    item = {"prompt": "Hello", "response": "Hi there, friend."}
    plain = http.post("/v1/score", json={"items": [item]}).json()
    names = plain["objectives"]
    rewards = np.array(plain["results"][0]["rewards"])
    weights = {names[0]: 2.0, names[4]: -1.0}
    weighted = http.post("/v1/score", json={"items": [item], "weights": weights}).json()["results"][0]["weighted"]
    assert math.isclose(weighted, 2.0 * rewards[0] - rewards[4], abs_tol=1e-6)
    as_list = [0.0] * len(names)
    as_list[1] = 3.0
    weighted_list = http.post("/v1/score", json={"items": [item], "weights": as_list}).json()["results"][0]["weighted"]
    assert math.isclose(weighted_list, 3.0 * rewards[1], abs_tol=1e-6)
    direction = http.post(
        "/v1/score", json={"items": [item], "direction": {names[0]: 3.0, names[1]: 4.0}}
    ).json()["results"][0]["weighted"]
    assert math.isclose(direction, 0.6 * rewards[0] + 0.8 * rewards[1], abs_tol=1e-6)


def test_bad_weights_and_directions_name_the_problem(http: httpx.Client) -> None:
    item = {"prompt": "Hello", "response": "Hi"}
    cases = [
        ({"direction": [0.0] * 6}, "zero"),
        ({"direction": {"no-such-objective": 1.0}}, "no-such-objective"),
        ({"weights": [1.0, 2.0]}, "6"),
        ({"weights": {"helpsteer-helpfulness": 1.0}, "direction": {"helpsteer-helpfulness": 1.0}}, "not both"),
    ]
    for extra, needle in cases:
        answer = http.post("/v1/score", json={"items": [item], **extra})
        assert answer.status_code == 422, (extra, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "invalid_request"
        assert needle in error["message"], (extra, error["message"])
    # NaN cannot travel as strict JSON, but Python's json module sends it; the server must refuse it.
    nan_body = '{"items": [{"prompt": "a", "response": "b"}], "direction": [NaN, 1, 0, 0, 0, 0]}'
    answer = http.post("/v1/score", content=nan_body, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "direction" in answer.json()["error"]["message"]


def test_calibrated_reward_uses_the_baseline(http: httpx.Client) -> None:
    prompt, baseline = "What is 2 + 2?", "2 + 2 = 4."
    body = http.post(
        "/v1/score",
        json={"groups": [{"prompt": prompt, "responses": ["4", "five"], "baseline": baseline}],
              "items": [{"prompt": prompt, "response": "4", "baseline": baseline},
                        {"prompt": prompt, "response": "four", "baseline": baseline}]},
    ).json()
    group = body["groups"][0]
    baseline_alone = http.post("/v1/score", json={"items": [{"prompt": prompt, "response": baseline}]}).json()
    assert math.isclose(group["baseline_score"], baseline_alone["results"][0]["score"], abs_tol=1e-5)
    for result in group["results"]:
        expected = 1 / (1 + math.exp(-(result["score"] - group["baseline_score"])))
        assert math.isclose(result["calibrated"], expected, abs_tol=1e-6)
    assert math.isclose(body["results"][0]["calibrated"], group["results"][0]["calibrated"], abs_tol=1e-5)
    four = body["results"][1]
    assert math.isclose(four["calibrated"], 1 / (1 + math.exp(-(four["score"] - group["baseline_score"]))),
                        abs_tol=1e-5)


def test_model_info_reports_limits_and_demo_flag(http: httpx.Client, loaded_model) -> None:  # type: ignore[no-untyped-def]
    info = http.get("/v1/model").json()
    assert info["objectives"] == list(loaded_model.model.objective_names)
    assert info["kind"] == "armorm" and info["is_demo"] is False and info["dtype"] == "float32"
    assert info["backend"] == "transformers" and info["forward"] == "packed"
    assert info["attention"] in kernels_here(torch.device("cpu"))  # the probe's choice on this machine
    assert info["limits"]["max_input_tokens"] == 256 and info["limits"]["max_items_per_request"] == 64
    assert info["revision"] == loaded_model.revision


def test_timing_headers(http: httpx.Client) -> None:
    answer = http.post("/v1/score", json={"items": [{"prompt": "a", "response": "b"}]})
    for header in ("x-queue-ms", "x-compute-ms", "x-tokenize-ms"):
        assert float(answer.headers[header]) >= 0


def test_openapi_documents_every_route_with_examples(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    for route in ("/v1/score", "/get_reward", "/v1/model", "/health/live", "/health/ready"):
        assert route in spec["paths"], route
    score_body = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    assert "grpo_group" in score_body["examples"]
    item_schema = spec["components"]["schemas"]["ScoreItem"]["properties"]
    assert all(field.get("description") for field in item_schema.values())
