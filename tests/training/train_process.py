"""Run `paretorm train` as a real subprocess (the way users run it) and read what it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PARETORM = str(Path(sys.executable).with_name("paretorm"))
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}


def train_command(algorithm: str, out: Path, policy: Path, prompts: Path, url: str | None, *extra: str) -> list[str]:
    command = [PARETORM, "train", algorithm, "--policy", str(policy), "--prompts", str(prompts), "--out", str(out),
               "--no-progress", "--max-new-tokens", "16", *extra]  # fmt: skip
    return command + (["--reward-url", url] if url else [])


def run_train(command: list[str], timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"
    return result


def start_train(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=ENV, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"training exited with {process.returncode} before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def train_through_outage(command: list[str], out: Path, service: Any, outage_s: float, log: Path) -> list[dict]:
    """Run the trainer `command` (writing to `out`) and kill `service` (a `ServiceProcess`) once two steps are
    logged; start it again `outage_s` later. The run must finish with exit 0; returns its step records."""
    process = start_train(command, log)
    try:
        wait_for(out / "metrics.jsonl", process)
        while out.joinpath("metrics.jsonl").read_text().count("\n") < 2:
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        service.kill()
        time.sleep(outage_s)  # the trainer keeps asking for rewards meanwhile
        service.start()
        assert process.wait(timeout=240 + 2 * outage_s) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            kill(process)
    return metrics(out)


def straight_and_resumed(root: Path, command_for: Any, checkpoint_step: int = 2) -> tuple[Path, Path]:
    """One uninterrupted run, and one SIGKILLed once its step-N checkpoint exists and then `--resume`d.

    `command_for(out)` builds the trainer command for a run directory; returns (straight, interrupted).
    """
    straight, interrupted = root / "straight", root / "interrupted"
    run_train(command_for(straight))
    command = command_for(interrupted)
    process = start_train(command, root / "first.log")
    wait_for(interrupted / "checkpoints" / f"step-{checkpoint_step:06d}" / "state.json", process)
    kill(process)
    run_train([*command, "--resume"])
    return straight, interrupted


def metrics(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def evaluation(out: Path, when: str) -> dict[str, Any]:
    rows = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    return next(r for r in rows if r["when"] == when)
