"""Learning tests that cannot pass by accident: the trained policy is compared with the untrained one.

The policy and the reward are the test's: the tiny policy's answers end after ~10 of 16 tokens on average
(conftest), and the rewards are answer length (``length:16:0:1`` = tokens / 16) and its opposite
(``brevity:16``), computed by the trainer, beside the six objectives of a real `paretorm serve` (so every
step still goes over HTTP). Each run evaluates 8 seeded samples per held-out prompt before and after
training (``eval.jsonl``); the margins below are a quarter of the whole reward range, far outside the
step-to-step noise (the untrained policy scores 0.48 +- 0.02 over seeds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.train_process import evaluation, metrics, run_train, train_command

pytestmark = [pytest.mark.slow, pytest.mark.learning, pytest.mark.timeout(900)]
MARGIN = 0.25
COMMON = ("--rollout", "generate", "--rule-reward", "length:16:0:1", "--rule-reward", "brevity:16",
          "--eval-samples", "8")  # fmt: skip
GRPO_STEPS = ("--steps", "20")


def _length_before_after(out: Path) -> tuple[float, float]:
    return evaluation(out, "before")["rewards/length/mean"], evaluation(out, "after")["rewards/length/mean"]


def _train(algorithm: str, out: Path, policy: Path, prompts: Path, held_out: Path, url: str, *extra: str) -> Path:
    run_train(train_command(algorithm, out, policy, prompts, url, *COMMON, "--eval-prompts", str(held_out), *extra))
    return out


def test_grpo_opposite_weights_move_the_policy_in_opposite_directions(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    longer = _train("grpo", tmp_path / "long", tiny_policy_dir, prompts_file, held_out_file, reward_service.url,
                    "--weights", "length=1,brevity=0", "--learning-rate", "5e-4", *GRPO_STEPS)  # fmt: skip
    shorter = _train("grpo", tmp_path / "short", tiny_policy_dir, prompts_file, held_out_file, reward_service.url,
                     "--weights", "length=0,brevity=1", "--learning-rate", "5e-4", *GRPO_STEPS)  # fmt: skip
    before, after_long = _length_before_after(longer)
    before_again, after_short = _length_before_after(shorter)
    assert before == pytest.approx(before_again)  # same untrained policy, same evaluation seed
    assert after_long > before + MARGIN, (before, after_long)
    assert after_short < before - MARGIN, (before, after_short)
    assert metrics(longer)[-1]["reward"] > metrics(longer)[0]["reward"]


def test_grpo_with_pama_weighting_raises_agreeing_objectives(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    out = _train("grpo", tmp_path / "pama", tiny_policy_dir, prompts_file, held_out_file, reward_service.url,
                 "--combine", "pama", "--pama-granularity", "token", "--rule-reward", "long=length:8:0:1",
                 "--objectives", "length,long", "--learning-rate", "5e-4", *GRPO_STEPS)  # fmt: skip
    before, after = _length_before_after(out)
    assert after > before + MARGIN, (before, after)
    assert {"pama_weights/length", "pama_weights/long"} <= metrics(out)[-1].keys()


def test_pama_noon_ppo_raises_the_targeted_objectives(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    out = _train("pama", tmp_path / "noon", tiny_policy_dir, prompts_file, held_out_file, reward_service.url,
                 "--rule-reward", "long=length:8:0:1", "--objectives", "length,long", "--kl-coef", "0.05",
                 "--learning-rate", "1e-3", *GRPO_STEPS)  # fmt: skip
    before, after = _length_before_after(out)
    assert after > before + MARGIN, (before, after)


def test_dpa_moves_the_policy_along_the_directions_it_samples(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    """Directions drawn around +45 degrees (length counts positively) vs around -45 (it counts negatively).

    What this does not show: one policy conditioned on the system prompt's direction. Trained on the whole
    [-45, 45] range, the tiny 2-layer policy ignores the direction (its front is flat); see the README.
    """
    common = ("--dpa-objectives", "helpsteer-helpfulness,length", "--steps", "15", "--learning-rate", "5e-4",
              "--sft-epochs", "1", "--sweep-angles=-45,45")  # fmt: skip
    up = _train("dpa", tmp_path / "up", tiny_policy_dir, prompts_file, held_out_file, reward_service.url,
                *common, "--angle-range", "30,60")  # fmt: skip
    down = _train("dpa", tmp_path / "down", tiny_policy_dir, prompts_file, held_out_file, reward_service.url,
                  *common, "--angle-range=-60,-30")  # fmt: skip
    before, after_up = _length_before_after(up)
    _, after_down = _length_before_after(down)
    assert after_up > before + MARGIN, (before, after_up)
    assert after_down < before - MARGIN, (before, after_down)
    assert all(r["dpa/angle/mean"] > 0 for r in metrics(up)) and all(r["dpa/angle/mean"] < 0 for r in metrics(down))
