"""CGPO end to end: one three-task run (CRPG, CRRAFT, CODPO) with vLLM rollouts against a real `paretorm serve`.

The run is killed with SIGKILL after its step-2 checkpoint and resumed; the resumed run must continue
exactly as the uninterrupted one (as the GRPO test checks), with the same baselines (OUT/cgpo_baselines.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.conftest import PROMPTS
from tests.training.train_process import metrics, straight_and_resumed, train_command

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]
TASKS = {
    "short": {"judges": [{"name": "word_count", "args": {"max": 2}},
                         {"name": "reward_threshold", "args": {"objective": "score", "min": -1e6}, "label": "sane"}],
              "optimizer": "crpg", "k": 4, "kl_max": 5.0, "weight": 1.0},
    "lower": {"judges": [{"name": "all_lowercase"}, {"name": "word_count", "args": {"max": 3}}],
              "reward": "helpsteer-helpfulness", "optimizer": "crraft", "k": 3, "kl_max": 5.0, "weight": 0.5},
    "pairs": {"judges": [{"name": "word_count", "args": {"max": 2}}], "optimizer": "codpo", "k": 4, "weight": 2.0},
}  # fmt: skip
ARGS = ("--steps", "3", "--save-every", "2", "--learning-rate", "1e-3", "--rollout", "vllm", "--prompts-per-step", "6")


def _numbers(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if isinstance(v, float) and not k.endswith(("_s", "tokens_per_s"))}


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps(TASKS))
    names = list(TASKS)
    lines = [{"prompt": p, "task": names[i % 3]} for i, p in enumerate(PROMPTS)]
    lines[0]["baseline"] = "Paris."  # the others get the untrained policy's greedy answer
    prompts = tmp_path / "tasks.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return tasks, prompts


# ~55 s, so the second stage; the default run has CRPG and CODPO (torchrun) and CRRAFT's losses (unit tests)
@pytest.mark.second_stage
def test_cgpo_three_tasks_killed_and_resumed_continues_exactly(
    tmp_path: Path, tiny_policy_dir: Path, reward_service: ServiceProcess
) -> None:
    tasks, prompts = _inputs(tmp_path)
    extra = (*ARGS, "--tasks", str(tasks))
    straight, interrupted = straight_and_resumed(
        tmp_path, lambda out: train_command("cgpo", out, tiny_policy_dir, prompts, reward_service.url, *extra))

    expected, got = metrics(straight), metrics(interrupted)
    assert [r["step"] for r in got] == [1, 2, 3]
    for want, have in zip(expected, got, strict=True):
        assert have.keys() == want.keys()
        for key, value in _numbers(want).items():
            assert have[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (want["step"], key)
    keys = set().union(*(r.keys() for r in got))
    for task, spec in TASKS.items():  # every task (so every optimiser) ran and logged its judges
        assert f"cgpo/{task}/loss" in keys or f"cgpo/{task}/violation_rate" in keys, task
        for judge in spec["judges"]:
            assert f"cgpo/{task}/judge/{judge.get('label', judge['name'])}/violation_rate" in keys
    assert {"cgpo/short/crpg_reward/mean", "cgpo/lower/over_kl_rate", "cgpo/pairs/pairs"} <= keys
    assert all(0.0 <= r["violation_rate"] <= 1.0 and 0.0 < r["calibrated/mean"] < 1.0 for r in got)
    assert any(r["cgpo/updated"] == 1.0 for r in got) and all("grad_norm" in r for r in got if r["cgpo/updated"])
    assert all(r["cgpo/short/judge/sane/violation_rate"] == 0.0 for r in got if "cgpo/short/prompts" in r)
    baselines = json.loads((interrupted / "cgpo_baselines.json").read_text())
    assert baselines["baselines"][0] == "Paris." and baselines["generated"] == len(PROMPTS) - 1
    assert baselines == json.loads((straight / "cgpo_baselines.json").read_text())
