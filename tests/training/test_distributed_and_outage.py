"""Scale-out and outages: torchrun data parallel on gloo, and a reward service killed in the middle of a run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.train_process import (
    TORCHRUN,
    metrics,
    run_train,
    start_train,
    train_command,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_torchrun_two_ranks_end_with_identical_weights(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, reward_service: ServiceProcess
) -> None:
    out = tmp_path / "ddp"
    command = train_command("grpo", out, tiny_policy_dir, prompts_file, reward_service.url, "--steps", "2",
                            "--rollout", "generate", "--rule-reward", "length:16:0:1", "--weights", "length=1",
                            "--learning-rate", "1e-3")  # fmt: skip
    run_train([TORCHRUN, "--standalone", "--nproc-per-node", "2", *command], timeout=300)
    info = json.loads((out / "final" / "paretorm_training.json").read_text())
    assert info["world_size"] == 2
    first, second = info["rank_weight_digests"]
    assert first == second  # gradients were all-reduced: both ranks took the same step
    from service.training.distributed import weights_digest
    from service.training.policy import load_policy

    assert weights_digest(load_policy(tiny_policy_dir).model) != first  # ...and the step changed the weights
    assert [r["step"] for r in metrics(out)] == [1, 2]  # rank 0 alone logs


def test_reward_outage_pauses_the_run_and_loses_no_step(
    tmp_path: Path, tiny_armorm_dir: Path, tiny_policy_dir: Path, prompts_file: Path
) -> None:
    service = ServiceProcess(tiny_armorm_dir, log_path=tmp_path / "serve.log").start()
    try:
        out = tmp_path / "outage"
        command = train_command("grpo", out, tiny_policy_dir, prompts_file, service.url, "--steps", "12",
                                "--rollout", "generate", "--rule-reward", "length:16:0:1", "--weights", "length=1")  # fmt: skip
        log = tmp_path / "train.log"
        process = start_train(command, log)
        wait_for(out / "metrics.jsonl", process)
        while out.joinpath("metrics.jsonl").read_text().count("\n") < 2:
            assert process.poll() is None
            time.sleep(0.05)
        service.kill()
        time.sleep(5.0)  # the trainer keeps asking for rewards meanwhile
        service.start()
        assert process.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        service.kill()
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, 13))
    waited = [r["step_s"] for r in records]
    assert max(waited) > 4.0  # one step sat out the outage (inside the client's own retries, or the trainer's)
