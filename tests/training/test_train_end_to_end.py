"""Each algorithm end to end: vLLM rollouts on the tiny policy, rewards over HTTP from a real `paretorm serve`.

The resume test kills a run with SIGKILL right after its step-2 checkpoint lands and resumes it: the
resumed run must continue exactly as the uninterrupted one (same prompts, same samples, same numbers),
with every step logged once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.train_process import metrics, run_train, straight_and_resumed, train_command

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]
GRPO = ("--steps", "4", "--save-every", "2", "--learning-rate", "1e-3", "--rule-reward", "length:16:0:1",
        "--weights", "length=1,helpsteer-helpfulness=0.5", "--rollout", "vllm", "--beta", "0.05")  # fmt: skip


def _numbers(record: dict) -> dict[str, float]:
    skip = ("_s", "tokens_per_s")
    return {k: v for k, v in record.items() if isinstance(v, float) and not k.endswith(skip)}


def test_grpo_killed_and_resumed_continues_exactly(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, reward_service: ServiceProcess
) -> None:
    straight, interrupted = straight_and_resumed(
        tmp_path, lambda out: train_command("grpo", out, tiny_policy_dir, prompts_file, reward_service.url, *GRPO))

    expected, got = metrics(straight), metrics(interrupted)
    assert [r["step"] for r in got] == [1, 2, 3, 4]  # contiguous, none twice
    for want, have in zip(expected, got, strict=True):
        assert have.keys() == want.keys()
        for key, value in _numbers(want).items():
            assert have[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (want["step"], key)
    # fp32 rollouts: the engine samples from the weights the trainer holds (synced after every update)
    assert max(r["rollout/logprob_gap"] for r in got) < 1e-3
    assert got[-1]["kl"] > 0  # the policy moved away from the reference
    _assert_final_loads(interrupted / "final")


def test_pama_noon_ppo_runs_and_logs_weights(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, reward_service: ServiceProcess
) -> None:
    out = tmp_path / "pama"
    run_train(train_command("pama", out, tiny_policy_dir, prompts_file, reward_service.url, "--steps", "2",
                            "--rule-reward", "length:16:0:1", "--rollout", "vllm", "--ppo-epochs", "2",
                            "--save-every", "1", "--plot"))  # fmt: skip
    records = metrics(out)
    assert [r["step"] for r in records] == [1, 2]
    weights = [k for k in records[-1] if k.startswith("pama_weights/")]
    assert len(weights) == 7  # six service objectives + the rule reward
    assert sum(records[-1][k] for k in weights) == pytest.approx(1.0)  # per-token weights lie on the simplex
    assert 0.0 <= records[-1]["pama/positive_token_share"] <= 1.0
    assert records[-1]["value_loss"] >= 0
    assert (out / "rewards.png").stat().st_size > 1000
    _assert_final_loads(out / "final")


def test_dpa_rounds_and_front(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    out = tmp_path / "dpa"
    run_train(train_command("dpa", out, tiny_policy_dir, prompts_file, reward_service.url, "--steps", "2",
                            "--rule-reward", "length:16:0:1", "--dpa-objectives", "helpsteer-helpfulness,length",
                            "--dpa-labels", "helpfulness,verbosity", "--rollout", "vllm", "--eval-prompts",
                            str(held_out_file), "--eval-samples", "2", "--sweep-angles=-45,0,45"))  # fmt: skip
    records = metrics(out)
    assert [r["step"] for r in records] == [1, 2]
    assert all(-45 <= r["dpa/angle/mean"] <= 45 for r in records)
    front = json.loads((out / "front.json").read_text())["front"]
    assert [p["angle"] for p in front] == [-45, 0, 45]
    assert (out / "front.png").stat().st_size > 1000
    _assert_final_loads(out / "final")


def _assert_final_loads(final: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(str(final))
    assert AutoTokenizer.from_pretrained(str(final)).chat_template
    assert json.loads((final / "paretorm_training.json").read_text())["objectives"]
