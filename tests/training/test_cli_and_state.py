"""Settings errors, the prompt cursor and checkpoints: what makes a run start right and resume right."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from service.training.cli import name_values, parse
from service.training.config import ConfigError
from service.training.data import PromptCursor, read_prompts
from service.training.policy import load_policy
from service.training.rule_rewards import parse_rule, parse_rules
from tests.training.train_process import PARETORM


def _args(prompts: Path, tmp_path: Path, *extra: str) -> list[str]:
    weights = [] if "--weights" in extra else ["--weights", "length=1"]
    return ["grpo", "--policy", str(tmp_path), "--prompts", str(prompts), "--steps", "2", "--out", str(tmp_path / "o"),
            "--reward-url", "http://127.0.0.1:1", *weights, *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-generations", "0"], "--num-generations must be an integer >= 1"),
        (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--combine", "direction"], "--combine direction needs --direction"),
        (["--rollout-tensor-parallel-size", "2"], "needs vLLM on CUDA"),
        (["--weights", "verbosity=0"], "needs --weights NAME=W,... with a non-zero weight"),
        (["--torch-threads", "0"], "--torch-threads must be >= 1 (got 0); leave it unset"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(prompts_file: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(_args(prompts_file, tmp_path, *extra))


def test_torch_threads_reach_the_run_config(
    prompts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARETORM_TORCH_THREADS", raising=False)
    assert parse(_args(prompts_file, tmp_path, "--torch-threads", "3"))[1].torch_threads == 3
    assert parse(_args(prompts_file, tmp_path))[1].torch_threads is None  # the CPU budget decides
    monkeypatch.setenv("PARETORM_TORCH_THREADS", "2")  # as the service reads it (e.g. the downward API)
    assert parse(_args(prompts_file, tmp_path))[1].torch_threads == 2
    assert parse(_args(prompts_file, tmp_path, "--torch-threads", "3"))[1].torch_threads == 3
    monkeypatch.setenv("PARETORM_TORCH_THREADS", "two")
    with pytest.raises(ConfigError, match="PARETORM_TORCH_THREADS='two': give a whole number"):
        parse(_args(prompts_file, tmp_path))


def test_cli_exits_2_with_one_line(prompts_file: Path, tmp_path: Path) -> None:
    result = subprocess.run([PARETORM, "train", *_args(prompts_file, tmp_path, "--epsilon", "0")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "paretorm train: --epsilon must be a finite number > 0 (got 0.0)"
    missing = subprocess.run([PARETORM, "train", "grpo", "--policy", "nowhere", "--prompts", str(prompts_file),
                              "--steps", "1", "--out", str(tmp_path / "x"), "--rule-reward", "length", "--weights", "length=1"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2
    assert "not a local model directory" in missing.stderr and "nothing is downloaded" in missing.stderr


def test_weights_and_rule_specs() -> None:
    assert name_values("helpsteer-helpfulness=1,verbosity=-0.5") == {"helpsteer-helpfulness": 1.0, "verbosity": -0.5}
    with pytest.raises(Exception, match="NAME=NUMBER"):
        name_values("verbosity")
    length = parse_rule("length")  # PAMA's np.clip(l/140, 70/140, 210/140)
    assert (length(10), length(140), length(1000)) == (0.5, 1.0, 1.5)
    assert parse_rule("short=brevity:10")(5) == 0.5 and parse_rule("short=brevity:10").name == "short"
    with pytest.raises(ConfigError, match="unknown kind"):
        parse_rule("sentiment")
    with pytest.raises(ConfigError, match="distinct"):
        parse_rules(["length", "length:8"])


def test_prompts_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: 'messages' must end before the response"):
        read_prompts(bad)
    bad.write_bytes(b'{"prompt": "caf\xe9"}\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"bad.jsonl: cannot be read \(UnicodeDecodeError\)"):
        read_prompts(bad)
    with pytest.raises(ConfigError, match=r"missing.jsonl: cannot be read \(FileNotFoundError\)"):
        read_prompts(tmp_path / "missing.jsonl")


def test_cursor_resumes_the_same_sequence() -> None:
    whole = PromptCursor(5, seed=3)
    expected = [whole.take(3) for _ in range(4)]
    assert sorted(expected[0] + expected[1][:2]) == [0, 1, 2, 3, 4]  # an epoch visits every prompt once
    first = PromptCursor(5, seed=3)
    got = [first.take(3), first.take(3)]
    second = PromptCursor(5, seed=3)
    second.restore(json.loads(json.dumps(first.state())))
    assert got + [second.take(3), second.take(3)] == expected
    with pytest.raises(ConfigError, match="same prompts file"):
        PromptCursor(6, seed=3).restore(first.state())


def test_checkpoint_round_trip_restores_everything(tmp_path: Path, tiny_policy_dir: Path) -> None:
    policy = load_policy(tiny_policy_dir)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    policy.model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()
    random.seed(11)
    torch.manual_seed(12)
    save_checkpoint(tmp_path, 3, policy, {"optimizer": optimizer.state_dict(), "extra": {}}, {"cursor": {"epoch": 1}})
    expected_python, expected_torch = random.random(), torch.rand(2)
    random.seed(0)
    torch.manual_seed(0)
    resumed = load_checkpoint(tmp_path)
    assert resumed.step == 3 and resumed.state["cursor"] == {"epoch": 1}
    assert random.random() == expected_python
    assert torch.equal(torch.rand(2), expected_torch)
    restored = load_policy(resumed.policy_dir)
    for (name, a), b in zip(policy.model.state_dict().items(), restored.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fresh = torch.optim.AdamW(restored.model.parameters(), lr=1e-3)
    fresh.load_state_dict(resumed.trainer["optimizer"])
    assert fresh.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])


def test_only_the_newest_checkpoints_are_kept_and_a_torn_one_is_ignored(tmp_path: Path, tiny_policy_dir: Path) -> None:
    policy = load_policy(tiny_policy_dir)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, policy, {"extra": {}}, {})
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-000002", "step-000003"]
    (tmp_path / "checkpoints" / "step-000004").mkdir()  # killed before state.json was written
    assert latest_checkpoint(tmp_path).name == "step-000003"


def test_train_help_lists_the_three_algorithms() -> None:
    result = subprocess.run([sys.executable, "-m", "service.cli", "train", "--help"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0
    assert all(name in result.stdout for name in ("grpo", "pama", "dpa"))
