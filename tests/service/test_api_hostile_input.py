"""Input a hostile or careless client sends, over real HTTP: always a 4xx in the one envelope, never a 500.

Regression tests for issue 11's "found when tried as a hostile user": lone surrogates in any text field,
numbers beyond a float, NaN, non-UTF-8 bytes, over-deep JSON, chunked bodies over the limit, an empty
judge list. Each case is checked on every route that could carry it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from service.api.json_body import CheckedJsonRoute
from service.app import create_app
from service.settings import ServiceSettings
from tests.service.test_api_errors import error_of

JUDGE = {"name": "regex", "args": {"pattern": "b"}}
SURROGATE = "\\ud800"  # the six characters of the JSON escape, sent raw: JSON allows it, Unicode does not
TEXT_FIELDS = [
    ("/v1/score", '{"items": [{"prompt": "a%s", "response": "b"}]}', "items[0].prompt"),
    ("/v1/score", '{"items": [{"prompt": "a", "response": "b%s"}]}', "items[0].response"),
    ("/v1/score", '{"items": [{"prompt": "a", "response": "b", "baseline": "%s"}]}', "items[0].baseline"),
    ("/v1/score", '{"items": [{"messages": [{"role": "user", "content": "%s"}, '
                  '{"role": "assistant", "content": "b"}]}]}', "items[0].messages[0].content"),
    ("/v1/score", '{"groups": [{"prompt": "p", "responses": ["ok", "x%s"]}]}', "groups[0].responses[1]"),
    ("/v1/score", '{"items": [], "weights": {"a%s": 1}}', "weights key"),
    ("/get_reward", '{"query": ["x%s"]}', "query[0]"),
    ("/get_reward", '{"query": ["x"], "prompts": ["%s"]}', "prompts[0]"),
    ("/v1/judge", '{"items": [{"prompt": "a%s", "response": "b", "judges": [{"name": "regex"}]}]}',
     "items[0].prompt"),
    ("/v1/judge", '{"items": [{"prompt": "a", "response": "b", "judges": '
                  '[{"name": "regex", "args": {"pattern": "%s"}}]}]}', "items[0].judges[0].args.pattern"),
]


def post_raw(http: httpx.Client, route: str, body: bytes | str | Iterator[bytes]) -> httpx.Response:
    return http.post(route, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(("route", "template", "path"), TEXT_FIELDS)
def test_lone_surrogate_in_any_text_field_is_a_422_naming_it(
    http: httpx.Client, route: str, template: str, path: str
) -> None:
    message = error_of(post_raw(http, route, template % SURROGATE), 422, "invalid_request")
    assert message.startswith(path + ":") and "surrogate" in message and "send valid Unicode" in message


def test_a_surrogate_pair_is_one_character_and_scores(http: httpx.Client) -> None:
    answer = post_raw(http, "/v1/score", '{"items": [{"prompt": "smile \\ud83d\\ude00", "response": "ok"}]}')
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("route", "body", "path"),
    [
        ("/v1/pama/weights", '{"advantages": [[1, 1%s]]}' % ("0" * 400), "advantages[0][1]"),
        ("/v1/pama/weights", '{"advantages": [[1, 2]], "ratios": [-1%s]}' % ("0" * 400), "ratios[0]"),
        ("/v1/score", '{"items": [], "direction": [1%s, 1, 0, 0, 0, 0]}' % ("0" * 400), "direction[0]"),
        ("/v1/judge", '{"items": [{"prompt": "a", "response": "b", "judges": [{"name": "word_count", '
                      '"args": {"max": 1%s}}]}]}' % ("0" * 400), "items[0].judges[0].args.max"),
    ],
)
def test_integers_beyond_a_float_are_a_422(http: httpx.Client, route: str, body: str, path: str) -> None:
    message = error_of(post_raw(http, route, body), 422, "invalid_request")
    assert message.startswith(path + ":") and "too large for a 64-bit float" in message


def test_unreadable_numbers_and_constants_are_422s(http: httpx.Client) -> None:
    digits = error_of(post_raw(http, "/v1/pama/weights", '{"advantages": [[%s]]}' % ("9" * 5000)), 422,
                      "invalid_request")
    assert "64-bit float" in digits
    infinity = error_of(post_raw(http, "/v1/pama/weights", '{"advantages": [[1, -Infinity]]}'), 422,
                        "invalid_request")
    assert infinity.startswith("advantages[0][1]:") and "finite" in infinity


def test_non_utf8_and_over_deep_json_are_422_not_400(http: httpx.Client) -> None:
    message = error_of(post_raw(http, "/v1/score", b'{"items": [{"prompt": "\xff", "response": "b"}]}'), 422,
                       "invalid_request")
    assert "UTF-8" in message
    for depth in (100, 10_000):  # under and over Python's recursion limit
        body = '{"advantages": [[1]], "x": ' + "[" * depth + "]" * depth + "}"
        message = error_of(post_raw(http, "/v1/pama/weights", body), 422, "invalid_request")
        assert "levels deep" in message


def test_chunked_body_over_the_limit_is_a_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends Transfer-Encoding: chunked
        yield b'{"items": [{"prompt": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'", "response": "b"}]}'

    message = error_of(post_raw(http, "/v1/score", chunks()), 413, "payload_too_large")
    assert "65536" in message


def test_judge_with_no_items_is_an_empty_answer(http: httpx.Client) -> None:
    answer = http.post("/v1/judge", json={"items": []})
    assert answer.status_code == 200 and answer.json() == {"results": []}
    one = http.post("/v1/judge", json={"items": [{"prompt": "a", "response": "b", "judges": [JUDGE]}]})
    assert one.status_code == 200 and one.json()["results"][0]["all_passed"] is True


def test_every_route_with_a_body_decodes_it_through_the_one_check() -> None:
    app = create_app(ServiceSettings())
    with_body = [route for route in app.routes if getattr(route, "body_field", None) is not None]
    assert {route.path for route in with_body} >= {"/v1/score", "/get_reward", "/v1/judge", "/v1/pama/weights"}
    assert all(isinstance(route, CheckedJsonRoute) for route in with_body)


def test_a_hopelessly_long_text_is_refused_before_tokenising(http: httpx.Client) -> None:
    started = time.monotonic()
    message = error_of(http.post("/v1/score", json={"items": [{"prompt": "p", "response": "w" * 60_000}]}), 413,
                       "payload_too_large")
    assert "60" in message and "characters" in message and "truncation" in message
    assert time.monotonic() - started < 5
    long_query = error_of(http.post("/get_reward", json={"query": ["w" * 60_000]}), 413, "payload_too_large")
    assert long_query.startswith("query[0]: ")


def test_a_hopeless_response_is_refused_before_tokenising_under_left_truncation(http: httpx.Client) -> None:
    body = {"items": [{"prompt": "p", "response": "w" * 60_000}], "truncation": "left"}
    message = error_of(http.post("/v1/score", json=body), 413, "payload_too_large")
    assert "characters" in message and message.endswith("shorten the response")


def test_anonymous_clients_get_401_before_any_body_is_read(service) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=service.url, timeout=30) as anonymous:
        for route, body in [("/v1/score", b'{"items": [{"prompt": "\\ud800"'), ("/v1/pama/weights", b"\xff\xfe"),
                            ("/get_reward", b"[" * 10_000), ("/v1/judge", b"not json")]:
            answer = post_raw(anonymous, route, body)
            assert "Authorization: Bearer" in error_of(answer, 401, "unauthorized"), route
