"""Judging is bounded: slow patterns stall neither the event loop nor other requests.

Issue 11: judges ran on the event loop with no time bound, so one catastrophic pattern stalled every
request and the health probes. A user pattern now stops after `REGEX_TIMEOUT_S` per response (its judge
fails with a reason), and each request's judging runs in `JudgeWorker`'s child process, killed past the
budget (`--judge-timeout-s 2` in the test service).
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

CATASTROPHIC = {"name": "regex", "args": {"pattern": "(a|aa)+$"}}
HOSTILE_RESPONSE = "a" * 60 + "b"  # (a|aa)+$ tries every split into ones and twos before failing
HOSTILE_ITEM = {"prompt": "p", "response": HOSTILE_RESPONSE, "judges": [CATASTROPHIC]}


def test_one_catastrophic_match_fails_its_judge_and_the_request_is_answered(http: httpx.Client) -> None:
    answer = http.post("/v1/judge", json={"items": [HOSTILE_ITEM, {**HOSTILE_ITEM, "response": "aaa"}]})
    assert answer.status_code == 200, answer.text
    slow, fine = answer.json()["results"]
    assert slow["all_passed"] is False and "did not finish within" in slow["results"][0]["reason"]
    assert fine["all_passed"] is True


def test_many_slow_items_are_cut_at_the_budget_and_the_service_stays_responsive(http: httpx.Client) -> None:
    answers: list[httpx.Response] = []
    body = {"items": [HOSTILE_ITEM] * 12}  # 12 x the per-match limit: over the request's budget
    started = time.monotonic()
    hostile = threading.Thread(target=lambda: answers.append(http.post("/v1/judge", json=body)))
    hostile.start()
    time.sleep(0.3)  # the patterns are now running in the worker
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
    fine = http.post("/v1/judge", json={"items": [{**HOSTILE_ITEM, "response": "aaa"}]})
    assert fine.status_code == 200 and fine.json()["results"][0]["all_passed"] is True  # a fresh worker


def test_worker_answers_in_order_after_a_cancelled_request() -> None:
    async def main() -> None:
        worker = JudgeWorker(budget_s=3.0)
        try:
            await asyncio.to_thread(worker.start)
            slow = asyncio.ensure_future(worker.evaluate([("p", HOSTILE_RESPONSE, [CATASTROPHIC], None, None)] * 12))
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
                await worker.evaluate([("p", HOSTILE_RESPONSE, [CATASTROPHIC], None, None)] * 4)
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
