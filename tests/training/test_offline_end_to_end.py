"""MODPO and MAPL end to end on the tiny policy, margins over real HTTP from a real `paretorm serve`.

Resume: a run stopped after its step-2 checkpoint (``--steps 2``; the schedule does not depend on the
total) and continued with ``--resume --steps 4`` must log exactly what one 4-step run logs (same pairs,
same numbers, every step once). The restarted run must not score anything again (the margin cache; the
service's own request counter says so) nor recompute the reference log-probs (their cache file is not
rewritten).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import ServiceProcess
from tests.training.conftest import PROMPTS
from tests.training.preference_files import length_pairs, mapl_file
from tests.training.train_process import ENV, metrics, train_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
MARGIN = "helpsteer-helpfulness"
MODPO = ("--objective", "brevity", "--weights", f"brevity=0.6,{MARGIN}=0.3,length=0.1", "--rule-reward",
         "length:16:0:1", "--prompts-per-step", "4", "--learning-rate", "1e-3", "--rollout", "generate")  # fmt: skip


def run_train(command: list[str]) -> None:
    """One intra-op thread: the tiny policy's ops take microseconds, and on a busy 2-core runner two threads
    per process made each step ~20x slower (measured: 2 s vs 0.1 s for one forward and backward)."""
    result = subprocess.run(command, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"


def _score_requests(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("paretorm_requests_total{") and "score" in line)  # fmt: skip


def _assert_same_steps(expected: list[dict], got: list[dict]) -> None:
    assert [r["step"] for r in got] == [1, 2, 3, 4]  # contiguous, none twice
    for want, have in zip(expected, got, strict=True):
        assert have.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float) and not key.endswith("_s"):
                assert have[key] == pytest.approx(value, rel=1e-4, abs=1e-5), (want["step"], key)


def _stopped_and_resumed(algorithm: str, out: Path, policy: Path, data: Path, url: str, *extra: str) -> None:
    command = train_command(algorithm, out, policy, data, url, *extra)
    run_train([*command, "--steps", "2", "--save-every", "1"])
    reference = out / "reference_logps-train.pt"
    written = reference.stat().st_mtime_ns
    before = _score_requests(url)
    run_train([*command, "--steps", "4", "--save-every", "1", "--resume"])
    assert _score_requests(url) == before, "the resumed run asked the service for rewards again"
    assert reference.stat().st_mtime_ns == written, "the resumed run recomputed the reference log-probs"


def test_modpo_margins_cached_and_resume_continues_exactly(
    tmp_path: Path, tiny_policy_dir: Path, reward_service: ServiceProcess
) -> None:
    data = length_pairs(tmp_path / "pairs.jsonl", PROMPTS, per_prompt=1)
    straight = tmp_path / "straight"
    run_train([*train_command("modpo", straight, tiny_policy_dir, data, reward_service.url, *MODPO), "--steps", "4"])
    resumed = tmp_path / "resumed"
    _stopped_and_resumed("modpo", resumed, tiny_policy_dir, data, reward_service.url, *MODPO)

    _assert_same_steps(metrics(straight), metrics(resumed))
    starts = [json.loads(line) for line in (resumed / "margin_runs.jsonl").read_text().splitlines()]
    assert [(s["start_step"], s["scored"]) for s in starts] == [(0, len(PROMPTS)), (2, 0)]
    cache = json.loads((resumed / "margin_cache.json").read_text())
    assert cache["revision"] == httpx.get(f"{reward_service.url}/v1/model").json()["revision"]
    assert len(cache["scores"]) == len(PROMPTS) and MARGIN in cache["objectives"]
    last = metrics(resumed)[-1]
    assert last["modpo/margin_delta/length"] < 0  # the chosen (short) answers are shorter
    assert last["rewards/margins"] > 0 and last["grad_norm"] > 0
    assert not (resumed / ".rollout-weights").exists()  # offline: no rollout engine was built
    _assert_final_loads(resumed / "final")


def test_mapl_resume_continues_exactly_and_reports_held_out_accuracy(
    tmp_path: Path, tiny_policy_dir: Path, reward_service: ServiceProcess
) -> None:
    data = mapl_file(tmp_path / "aug.jsonl", length_pairs(tmp_path / "pairs.jsonl", PROMPTS[:8], per_prompt=1))
    held = mapl_file(tmp_path / "held.jsonl", length_pairs(tmp_path / "h.jsonl", PROMPTS[8:], per_prompt=1, seed=1))
    extra = ("--rule-reward", "length:16:0:1", "--prompts-per-step", "2", "--learning-rate", "1e-3",
             "--inter-weight", "0.5", "--eval-pairs", str(held))  # fmt: skip
    straight = tmp_path / "straight"
    run_train([*train_command("mapl", straight, tiny_policy_dir, data, reward_service.url, *extra), "--steps", "4"])
    resumed = tmp_path / "resumed"
    _stopped_and_resumed("mapl", resumed, tiny_policy_dir, data, reward_service.url, *extra)

    _assert_same_steps(metrics(straight), metrics(resumed))
    record = metrics(resumed)[-1]
    assert record["pairs/count"] == 2 and record["intra/count"] >= 1
    assert {"intra/loss", "intra/accuracy", "inter/loss", "rewards/accuracies", "grad_norm", "lr"} <= record.keys()
    evals = [json.loads(line) for line in (straight / "eval_pairs.jsonl").read_text().splitlines()]
    assert [e["when"] for e in evals] == ["before", "after"]
    assert evals[0]["pairs/accuracy"] == 0.5  # untrained: every implicit-reward margin is exactly 0
    _assert_final_loads(resumed / "final")


def test_modpo_sweep_draws_the_front_from_service_scores(
    tmp_path: Path, tiny_policy_dir: Path, held_out_file: Path, reward_service: ServiceProcess
) -> None:
    data = length_pairs(tmp_path / "pairs.jsonl", PROMPTS, per_prompt=1)
    out = tmp_path / "sweep"
    run_train(train_command("modpo", out, tiny_policy_dir, data, reward_service.url, "--objective", "brevity",
                            "--weights", f"{MARGIN}=1", "--rule-reward", "brevity:16", "--sweep", "0.3,0.9",
                            "--steps", "2", "--rollout", "generate", "--eval-prompts", str(held_out_file)))  # fmt: skip
    front = json.loads((out / "front.json").read_text())
    assert [p["w"] for p in front["points"]] == [None, 0.3, 0.9]
    assert front["points"][1]["weights"] == pytest.approx({"brevity": 0.3, MARGIN: 0.7})
    assert {MARGIN, "brevity"} <= front["points"][2]["means"].keys()
    assert (out / "front.png").stat().st_size > 1000
    starts = [json.loads(line) for m in ("w-0.3", "w-0.9") for line in (out / m / "margin_runs.jsonl").open()]
    assert [s["scored"] for s in starts] == [len(PROMPTS), 0]  # the second member reads the shared cache


def _assert_final_loads(final: Path) -> None:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(final))
    assert json.loads((final / "paretorm_training.json").read_text())["algorithm"] in ("modpo", "mapl")
