"""CGPO learning test that cannot pass by accident: CRPG lowers a judge's violation rate on held-out prompts.

The judge is ``word_count`` with ``max: 2``. The untrained tiny policy (conftest: answers end after ~8 of 16
tokens) breaks it on 0.42 of its held-out samples (8 seeded samples per prompt); a policy that answers in
fewer words satisfies it, which is what CRPG's zero reward on violators pushes toward. Measured: 0.42 ->
0.02 in 15 steps; the margin asked here is 0.25, far outside the seed noise of the untrained rate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.train_process import evaluation, metrics, run_train, train_command

pytestmark = [pytest.mark.slow, pytest.mark.learning, pytest.mark.timeout(900)]
MARGIN = 0.25


def test_crpg_lowers_the_violation_rate_of_a_satisfiable_judge(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    out = tmp_path / "crpg"
    run_train(train_command("cgpo", out, tiny_policy_dir, prompts_file, reward_service.url, "--steps", "10",
                            "--rollout", "generate", "--judge", 'word_count:{"max": 2}', "--optimizer", "crpg",
                            "--kl-max", "50", "--learning-rate", "1e-3", "--eval-prompts", str(held_out_file),
                            "--eval-samples", "8"))  # fmt: skip
    before, after = evaluation(out, "before")["violation_rate"], evaluation(out, "after")["violation_rate"]
    assert before > 0.3, before  # the untrained policy does break the judge
    assert after < before - MARGIN, (before, after)
    assert metrics(out)[-1]["violation_rate"] < metrics(out)[0]["violation_rate"]
