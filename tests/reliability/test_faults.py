"""Faults: a forward that raises or hangs, SIGTERM under load, SIGKILL and restart, a replica lost.

The forward faults go through `faulty_serve` (a test-only wrapper backend in a real `paretorm serve`);
the process faults use the real console script. Every test records one row of the summary table.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clients import RetryPolicy, RewardClient
from tests.reliability.conftest import Summary, SuiteRow, peak_rss_mb
from tests.reliability.traffic import close, enveloped, item, metric, pairs, post_many
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.reliability

FAULTY = [sys.executable, "-m", "tests.reliability.faulty_serve"]
PATIENT = RetryPolicy(max_attempts=400, initial_backoff_s=0.05, max_backoff_s=0.5)


def faulty_service(model: Path, tmp: Path, *args: str) -> tuple[ServiceProcess, Path]:
    control = tmp / "faults"
    service = ServiceProcess(model, args=["--result-cache-items", "0", "--log-level", "warning", *args],
                             env={"PARETORM_TEST_FAULTS": str(control)}, log_path=tmp / "serve.log",
                             launcher=FAULTY)
    return service, control


@pytest.fixture(scope="module")
def faulty(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    service, control = faulty_service(tiny_armorm_dir, tmp_path_factory.mktemp("faulty"), "--batch-wait-ms", "20")
    with service:
        yield service, control


def raised_sizes(control: Path) -> list[int]:
    log = Path(f"{control}.raised")
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_forward_raising_fails_that_batch_only(faulty: tuple[ServiceProcess, Path], summary: Summary) -> None:
    service, control = faulty
    row = SuiteRow("faults: forward raises (x10 batches)")
    summary.rows.append(row)
    bodies = [{"items": [item(i, "raise")]} for i in range(12)]
    before = asyncio.run(post_many(service.url, bodies))
    for round_ in range(10):
        seen = len(raised_sizes(control))
        control.write_text("raise")
        answers = asyncio.run(post_many(service.url, bodies))
        failed_batch = sum(raised_sizes(control)[seen:])
        statuses = [a.status_code if isinstance(a, httpx.Response) else -1 for a in answers]
        row.cases += len(answers)
        row.lost += statuses.count(-1)
        bad_500 = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 500
                   and not (enveloped(a) and a.json()["error"]["type"] == "internal_error")]
        wrong = [s for s in statuses if s not in (200, 500)]
        if statuses.count(500) != failed_batch or bad_500 or wrong or failed_batch == 0:
            row.failures += 1
            row.examples.append(f"round {round_}: statuses {statuses}, batch that raised {failed_batch}")
        for got, want in zip(answers, before, strict=True):  # the rest of the traffic: the scores it gets alone
            if isinstance(got, httpx.Response) and got.status_code == 200 and not close(
                    [got.json()["results"][0]["score"]], [want.json()["results"][0]["score"]]):  # type: ignore[union-attr]
                row.failures += 1
    row.cases += 1
    row.failures += asyncio.run(post_many(service.url, bodies[:1]))[0].status_code != 200  # type: ignore[union-attr]
    row.max_rss_mb = peak_rss_mb(service.process.pid)  # type: ignore[union-attr]
    assert row.failures == 0 and row.lost == 0, row.examples


def test_hanging_forward_is_cut_by_the_deadline(faulty: tuple[ServiceProcess, Path], summary: Summary) -> None:
    service, control = faulty
    row = SuiteRow("faults: forward hangs 4 s, deadline 500 ms")
    summary.rows.append(row)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        control.write_text("hang 4")
        hanging = threading.Thread(target=lambda: client.post("/v1/score", json={"items": [item(1, "hang")]}))
        hanging.start()
        time.sleep(0.3)  # the hang has begun on the model thread
        for i in range(5):
            started = time.monotonic()
            answer = client.post("/v1/score", json={"items": [item(i, "cut")]},
                                 headers={"X-Request-Deadline-Ms": "500"})
            elapsed = time.monotonic() - started
            live = client.get("/health/live")  # the event loop is free while the model thread hangs
            row.cases += 1
            if not (answer.status_code == 504 and enveloped(answer) and elapsed < 1.5 and live.status_code == 200):
                row.failures += 1
                row.examples.append(f"{answer.status_code} after {elapsed:.2f} s, live {live.status_code}")
        hanging.join(30)
        row.cases += 1
        row.failures += client.post("/v1/score", json={"items": [item(9, "after")]}).status_code != 200
    row.max_rss_mb = peak_rss_mb(service.process.pid)  # type: ignore[union-attr]
    assert row.failures == 0, row.examples


def test_sigterm_with_200_requests_in_flight_loses_none(
        tiny_armorm_dir: Path, tmp_path: Path, summary: Summary) -> None:
    row = SuiteRow("faults: SIGTERM, 200 in flight")
    summary.rows.append(row)
    service, control = faulty_service(tiny_armorm_dir, tmp_path, "--max-batch-items", "16")
    control.write_text("slow 0.25")  # about 13 batches of 16: the drain has real work to finish
    service.start()
    try:
        async def run() -> list[httpx.Response | Exception]:
            flight = asyncio.ensure_future(post_many(service.url, [{"items": [item(i, "term")]} for i in range(200)]))
            while metric(service.url, "paretorm_inflight_requests") < 200:
                await asyncio.sleep(0.05)
            service.process.send_signal(15)  # type: ignore[union-attr]
            return await flight
        answers = asyncio.run(run())
        row.max_rss_mb = peak_rss_mb(service.process.pid)  # type: ignore[union-attr]
        exit_code = service.process.wait(timeout=90)  # type: ignore[union-attr]
    finally:
        service.kill()
    row.cases = len(answers)
    row.lost = sum(not isinstance(a, httpx.Response) for a in answers)
    row.failures = sum(isinstance(a, httpx.Response) and a.status_code != 200 for a in answers) + (exit_code != 0)
    outcomes = Counter(repr(a) if isinstance(a, Exception) else f"{a.status_code} {a.text[:90]}" for a in answers)
    assert row.lost == 0 and row.failures == 0, outcomes.most_common(4)


def check_every_item_once(batch: object, reference: list[list[float]], row: SuiteRow) -> None:
    """Each answer must be its own item's scores (references are pairwise distinct), in input order."""
    got = list(batch.rewards_matrix)  # type: ignore[attr-defined]
    row.cases += len(reference)
    row.lost += max(0, len(reference) - len(got))
    row.failures += abs(len(reference) - len(got)) + sum(
        not close(g, w) for g, w in zip(got, reference, strict=False))


def test_sigkill_and_restart_during_client_calls(tiny_armorm_dir: Path, tmp_path: Path, summary: Summary) -> None:
    row = SuiteRow("faults: SIGKILL + restart x3, 300 items")
    summary.rows.append(row)
    service = ServiceProcess(tiny_armorm_dir, args=["--max-items-per-request", "4", "--result-cache-items", "0"],
                             log_path=tmp_path / "serve.log")
    prompts, responses = pairs(300, "kill")
    with service, RewardClient(service.url, concurrency=2, retry=PATIENT, deadline_s=400) as rc:
        reference = rc.score_pairs(prompts, responses).rewards_matrix
        assert all(not close(a, b) for a, b in zip(reference, reference[1:], strict=False))  # items are told apart
        result: dict[str, object] = {}
        worker = threading.Thread(target=lambda: result.update(batch=rc.score_pairs(prompts, responses)))
        (replica,) = rc.pool.replicas
        worker.start()
        kills = 0
        for kill_at in (5, 25, 45):
            while replica.successes < len(prompts) // 4 + kill_at and worker.is_alive():
                time.sleep(0.005)
            if worker.is_alive():
                row.max_rss_mb = max(row.max_rss_mb, peak_rss_mb(service.process.pid))  # type: ignore[union-attr]
                service.kill()
                kills += 1
                service.start(wait=False)
        worker.join(400)
        assert not worker.is_alive()
    check_every_item_once(result["batch"], reference, row)
    assert kills == 3 and replica.failures >= 3, "the call finished before the kills; the test proves nothing"
    assert row.failures == 0 and row.lost == 0


def test_one_of_two_replicas_killed_mid_run(tiny_armorm_dir: Path, tmp_path: Path, summary: Summary) -> None:
    row = SuiteRow("faults: 1 of 2 replicas SIGKILLed, 400 items")
    summary.rows.append(row)
    args = ["--max-items-per-request", "4", "--result-cache-items", "0"]
    a = ServiceProcess(tiny_armorm_dir, args=args, log_path=tmp_path / "a.log")
    b = ServiceProcess(tiny_armorm_dir, args=args, log_path=tmp_path / "b.log")
    prompts, responses = pairs(400, "replica")
    with a, b, RewardClient([a.url, b.url], concurrency=4, retry=PATIENT, deadline_s=400) as rc:
        reference = rc.score_pairs(prompts, responses).rewards_matrix
        result: dict[str, object] = {}
        worker = threading.Thread(target=lambda: result.update(batch=rc.score_pairs(prompts, responses)))
        worker.start()
        down = next(r for r in rc.pool.replicas if r.url == b.url)
        start = down.successes
        while down.successes < start + 10 and worker.is_alive():
            time.sleep(0.005)
        killed_mid_run = worker.is_alive()
        row.max_rss_mb = max(peak_rss_mb(a.process.pid), peak_rss_mb(b.process.pid))  # type: ignore[union-attr]
        b.kill()
        worker.join(400)
        assert not worker.is_alive()
    check_every_item_once(result["batch"], reference, row)
    assert killed_mid_run and down.failures >= 1, "the call finished before the kill; the test proves nothing"
    assert row.failures == 0 and row.lost == 0
