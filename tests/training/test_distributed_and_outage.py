"""Scale-out and outages: torchrun data parallel on gloo, and a reward service killed in the middle of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.conftest import PROMPTS
from tests.training.train_process import TORCHRUN, metrics, run_train, train_command, train_through_outage

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


def test_cgpo_under_torchrun_ranks_drawing_different_tasks_take_the_same_step(
    tmp_path: Path, tiny_policy_dir: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    """Each rank draws one prompt per step, so in some steps rank 0 has only task `short` and rank 1 only
    `pairs` (whose CODPO may also find no pair): different forwards and backwards per rank, one update."""
    tasks = {"short": {"judges": [{"name": "word_count", "args": {"max": 2}}], "optimizer": "crpg", "k": 2},
             "pairs": {"judges": [{"name": "word_count", "args": {"max": 3}}], "optimizer": "codpo", "k": 2}}  # fmt: skip
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    lines = [{"prompt": p, "task": "short" if i % 2 else "pairs"} for i, p in enumerate(PROMPTS)]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    held_out = [{"prompt": json.loads(line)["prompt"], "task": "short" if i % 2 else "pairs"}
                for i, line in enumerate(held_out_file.read_text().splitlines())]  # fmt: skip
    (tmp_path / "held_out.jsonl").write_text("".join(json.dumps(line) + "\n" for line in held_out))
    out = tmp_path / "cgpo-ddp"
    command = train_command("cgpo", out, tiny_policy_dir, tmp_path / "tasks.jsonl", reward_service.url,
                            "--tasks", str(tmp_path / "tasks.json"), "--steps", "4", "--prompts-per-step", "2",
                            "--rollout", "generate", "--learning-rate", "1e-3",
                            "--eval-prompts", str(tmp_path / "held_out.jsonl"))  # fmt: skip
    run_train([TORCHRUN, "--standalone", "--nproc-per-node", "2", *command], timeout=400)

    info = json.loads((out / "final" / "paretorm_training.json").read_text())
    first, second = info["rank_weight_digests"]
    assert info["world_size"] == 2 and first == second  # the hand-averaged gradients gave both ranks one step
    from service.training.distributed import weights_digest
    from service.training.policy import load_policy

    assert weights_digest(load_policy(tiny_policy_dir).model) != first
    records = metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    uneven = [r for r in records if "cgpo/short/prompts" in r and "cgpo/pairs/prompts" in r]
    assert uneven, "no step had the ranks on different tasks; the seed or the prompts changed"
    # a step where the CODPO rank found no pair (no loss, no backward) while the other rank learned
    assert any(r.get("cgpo/pairs/pairs") == 0.0 and r["cgpo/updated"] == 1.0 for r in uneven)
    evaluations = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["when"] for e in evaluations] == ["before", "after"]  # rank 0 alone writes, from both shares
    assert all({"cgpo/short/violation_rate", "cgpo/pairs/violation_rate"} <= e.keys() for e in evaluations)
    baselines = json.loads((out / "cgpo_baselines.json").read_text())
    assert baselines["generated"] == len(PROMPTS) and all(isinstance(b, str) for b in baselines["baselines"])


def test_reward_outage_pauses_the_run_and_loses_no_step(
    tmp_path: Path, tiny_armorm_dir: Path, tiny_policy_dir: Path, prompts_file: Path
) -> None:
    service = ServiceProcess(tiny_armorm_dir, log_path=tmp_path / "serve.log").start()
    try:
        out = tmp_path / "outage"
        command = train_command("grpo", out, tiny_policy_dir, prompts_file, service.url, "--steps", "12",
                                "--rollout", "generate", "--rule-reward", "length:16:0:1", "--weights", "length=1")  # fmt: skip
        records = train_through_outage(command, out, service, 5.0, tmp_path / "train.log")
    finally:
        service.kill()
    assert [r["step"] for r in records] == list(range(1, 13))
    waited = [r["step_s"] for r in records]
    assert max(waited) > 4.0  # one step sat out the outage (inside the client's own retries, or the trainer's)
