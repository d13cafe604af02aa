"""Overload (429 with Retry-After) and SIGTERM drain, on real processes: nothing accepted is lost."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import ServiceProcess

ITEM = {"prompt": "Tell me something nice.", "response": "You are doing great work today."}


def post_score(url: str, item: dict[str, str] = ITEM) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as client:
        return client.post("/v1/score", json={"items": [item]})


def test_flood_gets_429_while_every_accepted_request_completes(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    args = ["--max-input-tokens", "64", "--max-queue-tokens", "64", "--max-batch-tokens", "64",
            "--batch-wait-ms", "50"]
    with ServiceProcess(tiny_armorm_dir, args=args, log_path=tmp_path / "serve.log") as service:
        expected = post_score(service.url).json()["results"][0]["score"]
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda _: post_score(service.url), range(48)))
        statuses = [answer.status_code for answer in answers]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) > 0 and statuses.count(200) > 0, statuses
        for answer in answers:
            if answer.status_code == 429:
                assert int(answer.headers["retry-after"]) >= 1
                assert "queue is full" in answer.json()["error"]["message"]
            else:
                # Equal within fp32 noise: batched identical items share their prompt, a lone one does not.
                assert answer.json()["results"][0]["score"] == pytest.approx(expected, abs=1e-5)
        assert post_score(service.url).status_code == 200


def test_sigterm_drains_in_flight_requests_then_exits_zero(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    service = ServiceProcess(tiny_armorm_dir, args=["--batch-wait-ms", "1500"], log_path=tmp_path / "serve.log")
    service.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(post_score, service.url) for _ in range(8)]
            time.sleep(0.5)  # the requests are now queued behind the batcher's wait
            assert service.process is not None
            service.process.send_signal(15)
            time.sleep(0.2)
            with httpx.Client(base_url=service.url, timeout=10) as client:
                ready = client.get("/health/ready")
                late = client.post("/v1/score", json={"items": [ITEM]})
            answers = [future.result(timeout=60) for future in futures]
        assert ready.status_code == 503 and "draining" in ready.json()["error"]["message"]
        assert late.status_code == 503 and late.json()["error"]["type"] == "unavailable"
        assert [answer.status_code for answer in answers] == [200] * 8
        assert service.process.wait(timeout=60) == 0
    finally:
        service.kill()


def test_readiness_waits_for_model_and_warm_up(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    service = ServiceProcess(tiny_armorm_dir, log_path=tmp_path / "serve.log")
    service.start(wait=False)
    seen: list[int] = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not stop.is_set():
            try:
                live = httpx.get(service.url + "/health/live", timeout=1)
                ready = httpx.get(service.url + "/health/ready", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            assert live.status_code == 200
            seen.append(ready.status_code)
            if ready.status_code == 200:
                break
            time.sleep(0.02)
        assert seen and seen[-1] == 200
        assert set(seen) <= {200, 503}
        # the start-up heap (torch, transformers, the model) is frozen out of gc's walks once ready
        frozen = re.search(r"froze (\d+) start-up objects", (tmp_path / "serve.log").read_text())
        assert frozen is not None and int(frozen.group(1)) > 100_000
    finally:
        service.kill()
