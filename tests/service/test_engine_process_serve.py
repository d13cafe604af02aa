"""`paretorm serve --engine-process` on real processes: the same scores, a drain that finishes the work,
and an exit when the engine dies (so a supervisor restarts the service, instead of 500s forever)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import ServiceProcess

ITEMS = [
    {"prompt": "Tell me something nice.", "response": "You are doing great work today."},
    {"prompt": "What is 2 + 2?", "response": "4"},
    {"prompt": "What is 2 + 2?", "response": "Four, since two plus two makes four."},
]


def engine_pid(log: Path) -> int:
    """The engine process's pid, as the service logs it at start-up."""
    found = re.search(r"engine process (\d+) runs", log.read_text())
    assert found is not None, log.read_text()[-2000:]
    return int(found.group(1))


def test_scores_match_the_in_process_model_and_sigterm_drains(
    http: httpx.Client, tiny_armorm_dir: Path, tmp_path: Path
) -> None:
    expected = http.post("/v1/score", json={"items": ITEMS}).json()["results"]  # the model in-process
    with ServiceProcess(tiny_armorm_dir, args=["--engine-process"], log_path=tmp_path / "serve.log") as split:
        answer = httpx.post(split.url + "/v1/score", json={"items": ITEMS}, timeout=60)
        assert answer.status_code == 200, answer.text
        for got, want in zip(answer.json()["results"], expected, strict=True):
            assert got["rewards"] == pytest.approx(want["rewards"], abs=1e-5)
            assert got["gating"] == pytest.approx(want["gating"], abs=1e-5)
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert split.process is not None
        engine = engine_pid(tmp_path / "serve.log")
        assert split.terminate() == 0
        assert not Path(f"/proc/{engine}").exists()  # closed by the drain, and reaped


def test_the_service_exits_1_when_its_engine_dies(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with ServiceProcess(tiny_armorm_dir, args=["--engine-process"], log_path=log) as split:
        assert split.process is not None
        os.kill(engine_pid(log), signal.SIGKILL)
        assert split.process.wait(timeout=30) == 1
    assert "engine process died" in log.read_text()
