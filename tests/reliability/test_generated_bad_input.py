"""Generated bad input against every body route: never a 5xx, always the one error envelope.

Hypothesis builds hostile JSON (lone surrogates, NUL, control-token text, integers past a float, NaN and
Infinity, deep and wide nesting, unknown keys) and sends it two ways per route: as a whole body, and as
one field of a valid body replaced. The service must answer every case below 500, every 4xx in
`{"error": {"type", "message"}}`, drop no connection, and still score a good request afterwards.
Cases per route: `PARETORM_RELIABILITY_EXAMPLES` (default 1000).
"""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import API_KEY, Summary, SuiteRow, peak_rss_mb
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("PARETORM_RELIABILITY_EXAMPLES", "1000"))
HOSTILE_TEXT = ["\ud800", "a\udfffb", "\x00", "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                "<|begin_of_text|>", "{{ 7 * 7 }}{% raw %}", "\u202e", "e\u0301", "\U0001f600", "", " " * 300]
GOOD = {
    "/v1/score": {"items": [{"prompt": "What is 2 + 2?", "response": "4", "baseline": "four"}],
                  "groups": [{"prompt": "Name a colour.", "responses": ["red", "blue"]}], "weights": [1, 0, 0, 0, 0, 0]},
    "/get_reward": {"query": ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>"]},
    "/v1/judge": {"items": [{"prompt": "Answer in lowercase.", "response": "ok",
                             "judges": [{"name": "all_lowercase"}, {"name": "regex", "args": {"pattern": "o"}}]}]},
    "/v1/pama/weights": {"advantages": [[0.1, -0.2], [0.3, 0.4]], "ratios": [1.0, 1.5], "noon": True},
}

text = st.text(max_size=40) | st.sampled_from(HOSTILE_TEXT)
number = (st.integers() | st.integers(min_value=10**300, max_value=10**400) | st.integers(max_value=-10**308)
          | st.floats(allow_nan=True, allow_infinity=True))
scalar = st.none() | st.booleans() | number | text
json_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(text, inner, max_size=6),
                          max_leaves=40)
# What the service cannot take, on its own or inside ordinary text: most replacements are one of these.
hostile = (st.sampled_from(HOSTILE_TEXT)
           | st.builds(lambda a, h, b: a + h + b, st.text(max_size=8), st.sampled_from(HOSTILE_TEXT), st.text(max_size=8))
           | st.sampled_from([10**400, -(10**309), float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 2**63])
           | st.lists(st.sampled_from(HOSTILE_TEXT), min_size=1, max_size=3))
replacement_value = st.one_of(hostile, hostile, json_value)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a body a value could be swapped in."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += paths(child, (*prefix, i))
    return found


def mutated(body: dict[str, Any], choice: int, replacement: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    spots = paths(body)
    *parent_path, last = spots[choice % len(spots)]
    parent: Any = body
    for key in parent_path:
        parent = parent[key]
    parent[last] = replacement
    return body


def encode(body: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as a hostile client would send them.
    return json.dumps(body, allow_nan=True).encode()


def check(client: httpx.Client, route: str, payload: bytes, row: SuiteRow) -> None:
    row.cases += 1
    try:
        answer = client.post(route, content=payload, headers={"content-type": "application/json"})
    except httpx.HTTPError as error:
        row.lost += 1
        row.examples.append(f"{route} {payload[:120]!r}: {type(error).__name__}")
        return
    enveloped = True
    if answer.status_code >= 400:
        try:
            body = answer.json()
            enveloped = set(body) == {"error"} and set(body["error"]) == {"type", "message"}
        except ValueError:
            enveloped = False
    if answer.status_code >= 500 or not enveloped:
        row.failures += 1
        row.examples.append(f"{route} {payload[:120]!r}: {answer.status_code} {answer.text[:160]}")


@pytest.mark.parametrize("route", sorted(GOOD))
def test_generated_bad_bodies_never_get_a_5xx(route: str, target: ServiceProcess, summary: Summary) -> None:
    row = SuiteRow(f"generated bad input {route}")
    summary.rows.append(row)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=target.url, headers=headers, timeout=60) as client:
        assert client.post(route, json=GOOD[route]).status_code == 200

        @settings(max_examples=EXAMPLES // 2, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(whole=json_value, spot=st.integers(0, 10**6), replacement=replacement_value)
        def attack(whole: Any, spot: int, replacement: Any) -> None:
            check(client, route, encode(whole), row)
            check(client, route, encode(mutated(GOOD[route], spot, replacement)), row)

        attack()
        row.cases += 1
        if client.post(route, json=GOOD[route]).status_code != 200:  # still serving after the attack
            row.failures += 1
    row.max_rss_mb = peak_rss_mb(target.process.pid) if target.process else 0.0
    assert row.failures == 0 and row.lost == 0, "\n".join(row.examples[:10])


def test_random_bytes_never_get_a_5xx(target: ServiceProcess, summary: Summary) -> None:
    row = SuiteRow("random bytes, every route")
    summary.rows.append(row)
    rng = random.Random(0)
    with httpx.Client(base_url=target.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        for _ in range(EXAMPLES // 3):
            good = encode(GOOD[route := rng.choice(sorted(GOOD))])
            cut = rng.randrange(len(good))
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
            check(client, route, good[:cut] + noise + good[cut:], row)
    row.max_rss_mb = peak_rss_mb(target.process.pid) if target.process else 0.0
    assert row.failures == 0 and row.lost == 0, "\n".join(row.examples[:10])
