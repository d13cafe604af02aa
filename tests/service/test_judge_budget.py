"""Judging is bounded: a catastrophic regex or a quadratic text stalls neither the loop nor other requests.

Issue 11: judges ran on the event loop with no time bound, so one `(a+)+$` pattern stalled every request
and the health probes. They now run in `JudgeWorker`'s child process, killed past the budget
(`--judge-timeout-s 2` in the test service).
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from service.errors import InvalidRequest
from service.scoring.judge_worker import JudgeWorker
from tests.service.test_api_errors import error_of

CATASTROPHIC = {"name": "regex", "args": {"pattern": "(a+)+$"}}
HOSTILE_RESPONSE = "a" * 60 + "b"  # (a+)+$ tries 2^60 splits before failing


def test_a_catastrophic_regex_is_cut_at_the_budget_and_the_service_stays_responsive(http: httpx.Client) -> None:
    answers: list[httpx.Response] = []
    body = {"items": [{"prompt": "p", "response": HOSTILE_RESPONSE, "judges": [CATASTROPHIC]}]}
    started = time.monotonic()
    hostile = threading.Thread(target=lambda: answers.append(http.post("/v1/judge", json=body)))
    hostile.start()
    time.sleep(0.3)  # the pattern is now running in the worker
    probe_started = time.monotonic()
    assert http.get("/health/live").status_code == 200
    assert http.post("/v1/score", json={"items": [{"prompt": "a", "response": "b"}]}).status_code == 200
    probe_s = time.monotonic() - probe_started
    hostile.join(timeout=30)
    took_s = time.monotonic() - started
    message = error_of(answers[0], 422, "invalid_request")
    assert "budget of 2 s" in message and "catastrophic backtracking" in message
    assert probe_s < 1.0, f"health and scoring waited {probe_s:.2f} s behind the hostile judge"
    assert 1.5 < took_s < 10, took_s
    fine = http.post("/v1/judge", json={"items": [{"prompt": "p", "response": "aaa", "judges": [CATASTROPHIC]}]})
    assert fine.status_code == 200 and fine.json()["results"][0]["all_passed"] is True  # a fresh worker


def test_the_budget_bounds_the_whole_request_not_each_item(http: httpx.Client) -> None:
    # Each item alone takes about 1.5 s here (2^24 splits, 2 busy cores), under the budget; twelve do not fit.
    item = {"prompt": "p", "response": "a" * 24 + "b", "judges": [CATASTROPHIC]}
    started = time.monotonic()
    assert "budget" in error_of(http.post("/v1/judge", json={"items": [item] * 12}), 422, "invalid_request")
    assert time.monotonic() - started < 10


def test_worker_answers_in_order_after_a_cancelled_request() -> None:
    async def main() -> None:
        worker = JudgeWorker(budget_s=3.0)
        try:
            await asyncio.to_thread(worker.start)
            slow = asyncio.ensure_future(worker.evaluate([("p", HOSTILE_RESPONSE, [CATASTROPHIC], None, None)]))
            await asyncio.sleep(0.3)
            slow.cancel()  # a client hung up or its deadline passed
            with pytest.raises(asyncio.CancelledError):
                await slow
            [quick] = await worker.evaluate([("p", "aaa", [CATASTROPHIC], None, 3)])
            assert quick.error is None and quick.results[0][:2] == ("regex", True)
            [spec_error] = await worker.evaluate([("p", "x", [{"name": "length", "args": {"unit": "tokens", "max": 9}}],
                                                   None, None)])
            assert spec_error.error is not None and "token count" in spec_error.error
        finally:
            worker.close()

    asyncio.run(main())


def test_worker_budget_raises_invalid_request() -> None:
    async def main() -> None:
        worker = JudgeWorker(budget_s=0.5)
        try:
            with pytest.raises(InvalidRequest, match="budget of 0.5 s"):
                await worker.evaluate([("p", HOSTILE_RESPONSE, [CATASTROPHIC], None, None)])
        finally:
            worker.close()

    asyncio.run(main())


def test_a_judge_that_crashes_is_answered_and_the_worker_lives_on() -> None:
    from service.objectives.judges import Judge, JudgeRegistry
    from service.scoring.judge_worker import _judge_one

    def broken(prompt: str, response: str, args: object, ctx: object) -> object:
        raise ZeroDivisionError("a judge bug")

    registry = JudgeRegistry([Judge("broken", "always raises", {"type": "object"}, broken)])  # type: ignore[arg-type]
    verdicts = _judge_one(("p", "r", [{"name": "broken"}], None, None), registry)
    assert verdicts.crash == "ZeroDivisionError: a judge bug" and verdicts.error is None


def test_deep_json_in_a_response_is_a_verdict_not_a_dead_worker(http: httpx.Client) -> None:
    body = {"items": [{"prompt": "p", "response": "[" * 20_000 + "]" * 20_000, "judges": [{"name": "json_format"}]}]}
    answer = http.post("/v1/judge", json=body)
    assert answer.status_code == 200, answer.text
    assert "nested too deep" in answer.json()["results"][0]["results"][0]["reason"]
