"""A trainer run through a 30 s reward outage (issue 11): no step lost, none done twice, the run finishes.

The default suite proves the same with a 5 s outage (`tests/training/test_distributed_and_outage.py`); this
one holds the service down for `PARETORM_RELIABILITY_OUTAGE_S` (default 30 s), past the client's own retries,
so the trainer's outage loop (`RewardSource`, backoff up to 30 s) carries the step.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.conftest import SuiteRow, Summary
from tests.support.service_process import ServiceProcess
from tests.training.conftest import PROMPTS, build_tiny_policy, write_prompts
from tests.training.train_process import train_command, train_through_outage

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(600)]
OUTAGE_S = float(os.environ.get("PARETORM_RELIABILITY_OUTAGE_S", "30"))
STEPS = 8


def test_trainer_survives_a_reward_outage(tmp_path: Path, tiny_armorm_dir: Path, summary: Summary) -> None:
    policy = build_tiny_policy(tmp_path / "policy")
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "run"
    service = ServiceProcess(tiny_armorm_dir, log_path=tmp_path / "serve.log").start()
    try:
        command = train_command("grpo", out, policy, prompts, service.url, "--steps", str(STEPS),
                                "--rollout", "generate", "--weights", "helpsteer-helpfulness=1",
                                "--save-every", "4")  # fmt: skip
        records = train_through_outage(command, out, service, OUTAGE_S, tmp_path / "train.log")
    finally:
        service.kill()
    steps = [r["step"] for r in records]
    longest = max(r["step_s"] for r in records)
    row = SuiteRow(f"faults: trainer through a {OUTAGE_S:.0f} s reward outage", cases=STEPS,
                   failures=sum(steps.count(s) != 1 for s in range(1, STEPS + 1)),
                   lost=len(set(range(1, STEPS + 1)) - set(steps)),
                   note=f"GRPO, {STEPS} steps, service SIGKILLed after step 2 and restarted {OUTAGE_S:.0f} s "
                        f"later; steps logged {steps}; the longest step {longest:.1f} s (it waited out the "
                        "outage)")  # fmt: skip
    summary.rows.append(row)
    print(row.note)  # noqa: T201
    assert steps == list(range(1, STEPS + 1)), row.note
    assert longest > OUTAGE_S - 1, row.note  # one step sat out the outage instead of skipping its rewards
    assert (out / "checkpoints" / f"step-{STEPS:06d}" / "state.json").is_file()
    assert "reward service unavailable for" in (tmp_path / "train.log").read_text()  # the trainer's own loop
