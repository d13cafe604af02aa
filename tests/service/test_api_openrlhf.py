"""`/get_reward` in OpenRLHF's exact wire format (what `--remote_rm_url` sends and reads)."""

from __future__ import annotations

import math

import httpx


def templated(tokenizer, prompt: str, response: str) -> str:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False))


def test_get_reward_matches_score(http: httpx.Client, loaded_model) -> None:  # type: ignore[no-untyped-def]
    pairs = [("Hi", "Hello!"), ("What is 1+1?", "2")]
    queries = [templated(loaded_model.tokenizer, p, r) for p, r in pairs]
    answer = http.post("/get_reward", json={"query": queries, "prompts": [p for p, _ in pairs], "labels": [None, None]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    assert body["rewards"] == body["scores"] and len(body["rewards"]) == 2
    scored = http.post("/v1/score", json={"items": [{"prompt": p, "response": r} for p, r in pairs]}).json()
    for i, result in enumerate(scored["results"]):
        assert math.isclose(body["rewards"][i], result["score"], abs_tol=1e-5)
        for k, name in enumerate(scored["objectives"]):
            assert math.isclose(body["extra_logs"][name][i], result["rewards"][k], abs_tol=1e-5)


def test_empty_query_is_an_empty_answer(http: httpx.Client) -> None:
    body = http.post("/get_reward", json={"query": []}).json()
    assert body["rewards"] == [] and body["scores"] == []
    assert all(values == [] for values in body["extra_logs"].values())


def test_untemplated_query_is_a_422_naming_the_index(http: httpx.Client, loaded_model) -> None:  # type: ignore[no-untyped-def]
    good = templated(loaded_model.tokenizer, "Hi", "Hello")
    answer = http.post("/get_reward", json={"query": [good, "just some raw text"]})
    assert answer.status_code == 422
    assert "query[1]" in answer.json()["error"]["message"]
