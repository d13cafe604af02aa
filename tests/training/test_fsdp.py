"""``--fsdp`` under torchrun (2 CPU ranks on gloo): the same maths as DDP, whole weights to vLLM, exact resume.

One FSDP run and one DDP run with the same seeds, both rolling out on vLLM (each rank its own engine,
fed the gathered weights after every update), then an FSDP run killed after its step-2 checkpoint and
resumed. Runs are shared by the tests through a module fixture (three torchrun launches in all).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.service_process import ServiceProcess
from tests.training.train_process import ENV, TORCHRUN, metrics, run_train, train_command



def torchrun_test(test: Any) -> Any:
    """The torchrun tests' marks (the config test beside them is instant)."""
    return pytest.mark.vllm(pytest.mark.slow(pytest.mark.timeout(900)(test)))


STEPS = 3
ARGS = ("--steps", str(STEPS), "--rollout", "vllm", "--prompts-per-step", "4", "--num-generations", "4",
        "--rule-reward", "length:16:0:1", "--weights", "length=1", "--learning-rate", "1e-3",
        "--beta", "0.05", "--num-iterations", "2", "--save-every", "2")  # fmt: skip
"""``--beta`` loads the (sharded) reference, ``--num-iterations 2`` recomputes old log-probs under FSDP."""
COMPARED = ("loss", "kl", "grad_norm", "clip_fraction", "reward", "rewards/length/mean", "rollout/logprob_gap")
RTOL, ATOL = 1e-4, 1e-6
"""FSDP vs DDP: the same sums in another order (reduce-scatter of shards vs all-reduce, the grad norm
as a sum of shard norms), so fp32 round-off only; measured differences are far below this."""


def torchrun(*command: str) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc-per-node", "2", *command]


class Runs:
    """The module's torchrun launches, each run once on first use."""

    def __init__(self, root: Path, policy: Path, prompts: Path, url: str) -> None:
        self.root, self.policy, self.prompts, self.url = root, policy, prompts, url
        self.done: dict[str, Path] = {}

    def command(self, out: Path, *extra: str) -> list[str]:
        return torchrun(*train_command("grpo", out, self.policy, self.prompts, self.url, *ARGS, *extra))

    def get(self, name: str, *extra: str) -> Path:
        if name not in self.done:
            out = self.root / name
            run_train(self.command(out, *extra), timeout=400)
            self.done[name] = out
        return self.done[name]


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, tiny_policy_dir: Path, prompts_file: Path, reward_service: ServiceProcess
) -> Runs:
    return Runs(tmp_path_factory.mktemp("fsdp-runs"), tiny_policy_dir, prompts_file, reward_service.url)


def training_info(out: Path) -> dict[str, Any]:
    return json.loads((out / "final" / "paretorm_training.json").read_text())


def digest_of(directory: Path) -> str:
    from service.training.distributed import weights_digest
    from service.training.policy import load_policy

    return weights_digest(load_policy(directory).model)  # AutoModelForCausalLM.from_pretrained


@torchrun_test
@pytest.mark.second_stage  # ~30 s each, with the next: a variant of the DDP runs that the default run proves
def test_fsdp_shards_trains_and_exports_whole_weights(runs: Runs, tiny_policy_dir: Path) -> None:
    out = runs.get("fsdp", "--fsdp")
    info = training_info(out)
    assert info["world_size"] == 2 and info["parallel"] == "fsdp"
    first, second = info["rank_weight_digests"]
    assert first == second  # both ranks gathered the same whole weights...
    assert first != digest_of(tiny_policy_dir)  # ...which the steps moved...
    assert digest_of(out / "final") == first  # ...and final/ is exactly them, as a plain HF directory
    from service.training.policy import load_policy

    total = sum(p.numel() for p in load_policy(tiny_policy_dir).model.parameters())
    local = [int(n) for n in info["rank_local_parameters"]]
    assert sum(local) == total and max(local) < 0.6 * total  # each rank held about half: sharded, not copied
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    # each rank's vLLM samples with the trainer's current weights (a stale engine shows a gap ~1e-2 here)
    assert all(r["rollout/logprob_gap"] < 1e-3 for r in rows), [r["rollout/logprob_gap"] for r in rows]


@torchrun_test
@pytest.mark.second_stage
def test_fsdp_steps_match_ddp_with_the_same_seeds(runs: Runs) -> None:
    fsdp, ddp = metrics(runs.get("fsdp", "--fsdp")), metrics(runs.get("ddp"))
    assert [r["step"] for r in fsdp] == [r["step"] for r in ddp] == [1, 2, 3]
    for ours, theirs in zip(fsdp, ddp, strict=True):
        for key in COMPARED:
            assert ours[key] == pytest.approx(theirs[key], rel=RTOL, abs=ATOL), (ours["step"], key)
    import torch

    from service.training.policy import load_policy

    a = load_policy(runs.get("fsdp", "--fsdp") / "final").model.state_dict()
    b = load_policy(runs.get("ddp") / "final").model.state_dict()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst  # the final weights agree to fp32 round-off
    assert not all(torch.equal(a[k], load_policy(runs.policy).model.state_dict()[k]) for k in a)


@pytest.mark.second_stage  # ~55 s; GRPO's kill-and-resume is proven in the default run
@torchrun_test
def test_fsdp_killed_after_a_checkpoint_resumes_exactly(runs: Runs) -> None:
    straight = runs.get("fsdp", "--fsdp")
    out = runs.root / "killed"
    kill_after_checkpoint(runs.command(out, "--fsdp"), out / "checkpoints" / "step-000002" / "state.json")
    shutil.rmtree(out / "checkpoints" / "step-000003", ignore_errors=True)  # had the kill come late
    shutil.rmtree(out / "final", ignore_errors=True)
    run_train(runs.command(out, "--fsdp", "--resume"), timeout=400)
    resumed, reference = metrics(out), metrics(straight)
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for key in COMPARED:
        assert resumed[-1][key] == reference[-1][key], key  # the same numbers, not merely close
    assert training_info(out)["rank_weight_digests"] == training_info(straight)["rank_weight_digests"]
    saved = json.loads((out / "checkpoints" / "step-000002" / "state.json").read_text())
    assert saved["fsdp"] is True


def test_fsdp_refuses_what_it_cannot_do(tmp_path: Path, prompts_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.training.cli import parse
    from service.training.config import ConfigError

    base = ["--policy", "p", "--prompts", str(prompts_file), "--out", str(tmp_path), "--steps", "1",
            "--weights", "length=1", "--rule-reward", "length", "--fsdp"]  # fmt: skip
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc-per-node N"):
        parse(["grpo", *base])
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parse(["grpo", *base, "--prompts-per-step", "4"])[1].fsdp
    with pytest.raises(ConfigError, match="multiple of the 2 processes"):
        parse(["grpo", *base, "--prompts-per-step", "3"])
    with pytest.raises(ConfigError, match="--lora-rank is not built"):
        parse(["grpo", *base, "--lora-rank", "4"])
    with pytest.raises(ConfigError, match="grpo only"):
        parse(["pama", *base])


def kill_after_checkpoint(command: list[str], marker: Path, timeout: float = 400.0) -> None:
    """Start ``command`` (torchrun), SIGKILL every rank and torchrun itself once ``marker`` exists."""
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            assert process.poll() is None, f"training exited with {process.returncode} before {marker}"
            assert time.monotonic() < deadline, f"{marker} did not appear within {timeout} s"
            time.sleep(0.05)
    finally:
        # torchrun starts each rank in its own session, so the ranks are killed by their own ids
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.kill()
        process.wait(timeout=60)
