"""Every error status over real HTTP: one envelope, the right code, a message that says how to fix it."""

from __future__ import annotations

import httpx

from tests.service.conftest import API_KEY
from tests.support.service_process import ServiceProcess


def error_of(answer: httpx.Response, status: int, error_type: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    return str(body["error"]["message"])


def test_auth_required_on_scoring_routes_but_not_health(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as anonymous:
        message = error_of(anonymous.post("/v1/score", json={"items": []}), 401, "unauthorized")
        assert "Authorization: Bearer" in message
        error_of(anonymous.post("/get_reward", json={"query": []}), 401, "unauthorized")
        error_of(anonymous.get("/v1/model"), 401, "unauthorized")
        wrong = anonymous.post("/v1/score", json={"items": []}, headers={"Authorization": "Bearer nope"})
        assert "invalid API key" in error_of(wrong, 401, "unauthorized")
        assert wrong.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/health/live").status_code == 200
        assert anonymous.get("/health/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        second = anonymous.post("/v1/score", json={"items": []}, headers={"Authorization": "Bearer second-key"})
        assert second.status_code == 200


def test_schema_errors_name_the_field(http: httpx.Client) -> None:
    message = error_of(http.post("/v1/score", json={"items": [{"prompt": "only a prompt"}]}), 422, "invalid_request")
    assert "items[0]" in message and "response" in message
    message = error_of(http.post("/v1/score", json={"itemz": []}), 422, "invalid_request")
    assert "itemz" in message
    message = error_of(http.post("/v1/score", json={"groups": [{"prompt": "p", "responses": []}]}), 422,
                       "invalid_request")
    assert "groups[0].responses" in message


def test_conversation_without_assistant_turn(http: httpx.Client) -> None:
    body = {"items": [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
                      {"messages": [{"role": "user", "content": "no answer"}]}]}
    message = error_of(http.post("/v1/score", json=body), 422, "invalid_request")
    assert message.startswith("items[1]") and "assistant" in message


def test_too_many_tokens_413_or_left_truncation(http: httpx.Client) -> None:
    long_prompt = "word " * 600
    item = {"prompt": long_prompt, "response": "Short answer."}
    message = error_of(http.post("/v1/score", json={"items": [item]}), 413, "payload_too_large")
    assert "256" in message and "truncation" in message
    truncated = http.post("/v1/score", json={"items": [item], "truncation": "left"})
    assert truncated.status_code == 200, truncated.text
    result = truncated.json()["results"][0]
    assert result["num_tokens"] == 256 and result["truncated_tokens"] > 0
    huge_response = {"prompt": "hi", "response": "word " * 600}
    message = error_of(http.post("/v1/score", json={"items": [huge_response], "truncation": "left"}), 413,
                       "payload_too_large")
    assert "shorten the response" in message


def test_too_many_items_and_too_large_body(http: httpx.Client) -> None:
    items = [{"prompt": "a", "response": "b"}] * 65
    message = error_of(http.post("/v1/score", json={"items": items}), 413, "payload_too_large")
    assert "64" in message
    big = {"items": [{"prompt": "x" * 70_000, "response": "y"}]}
    message = error_of(http.post("/v1/score", json=big), 413, "payload_too_large")
    assert "65536" in message


def test_deadline_header(http: httpx.Client) -> None:
    message = error_of(
        http.post("/v1/score", json={"items": [{"prompt": "a", "response": "b"}]},
                  headers={"X-Request-Deadline-Ms": "soon"}), 422, "invalid_request")
    assert "X-Request-Deadline-Ms" in message
    ok = http.post("/v1/score", json={"items": [{"prompt": "a", "response": "b"}]},
                   headers={"X-Request-Deadline-Ms": "60000"})
    assert ok.status_code == 200


def test_expired_deadline_is_a_504_and_blocks_nobody(http: httpx.Client) -> None:
    item = {"prompt": "a", "response": "b"}
    message = error_of(http.post("/v1/score", json={"items": [item]}, headers={"X-Request-Deadline-Ms": "0.001"}),
                       504, "deadline_exceeded")
    assert "deadline" in message
    assert http.post("/v1/score", json={"items": [item]}).status_code == 200


def test_unknown_route_and_method(http: httpx.Client) -> None:
    error_of(http.get("/v2/nothing"), 404, "not_found")
    error_of(http.get("/v1/score"), 405, "method_not_allowed")


def test_non_json_body(http: httpx.Client) -> None:
    message = error_of(http.post("/v1/score", content=b"not json", headers={"content-type": "application/json"}),
                       422, "invalid_request")
    assert "JSON" in message or "json" in message


def test_metrics_count_requests_and_stages(http: httpx.Client) -> None:
    http.post("/v1/score", json={"items": [{"prompt": "a", "response": "b"}]})
    text = http.get("/metrics").text
    assert 'paretorm_requests_total{route="/v1/score",status="200"}' in text
    assert 'paretorm_stage_duration_seconds_count{stage="forward"}' in text
    assert 'paretorm_stage_duration_seconds_count{stage="queue"}' in text
    assert 'paretorm_stage_duration_seconds_count{stage="tokenize"}' in text
    assert 'paretorm_stage_duration_seconds_count{stage="total"}' in text
    assert "paretorm_queue_items" in text and "paretorm_padding_ratio_bucket" in text
    assert 'paretorm_objective_score_count{objective="helpsteer-helpfulness"}' in text
    assert API_KEY not in text
