"""The rollout seam: vLLM and transformers' generate agree, and vLLM samples from the weights just synced.

vLLM runs in a child process (in-process engine there), so its environment never leaks into this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.train_process import ENV, PARETORM

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

CHECK = r"""
import json, sys, torch
from pathlib import Path
from service.training.policy import load_policy
from service.training.rollout import GenerateRollout, Sampling, VllmRollout
from service.training.sequences import batched_logprobs, build_batch

policy = load_policy(Path(sys.argv[1]))
prompts = [policy.render([{"role": "user", "content": t}], 512) for t in ("Say hi.", "What is water?", "Add two numbers.")]
vllm = VllmRollout(policy, dtype="float32", max_model_len=256, seed=0, sync_dir=Path(sys.argv[2]))
greedy = Sampling(12, greedy=True)
same = [a[0].token_ids == b[0].token_ids for a, b in zip(vllm.generate(prompts, 1, greedy, 0),
                                                          GenerateRollout(policy).generate(prompts, 1, greedy, 0))]
def gap():
    out = vllm.generate(prompts, 2, Sampling(12), 5)
    flat = [c for group in out for c in group]
    batch = build_batch([p for p in prompts for _ in range(2)], [list(c.token_ids) for c in flat], policy.tokenizer.pad_token_id)
    mine = batched_logprobs(policy.model, batch, 1.0)
    theirs = torch.zeros_like(mine)
    for i, c in enumerate(flat):
        theirs[i, : len(c.logprobs)] = torch.tensor(c.logprobs)
    return float(((mine - theirs).abs() * batch.completion_mask).max())
before = gap()
with torch.no_grad():
    for p in policy.model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
stale = gap()
vllm.sync(policy)
synced = gap()
vllm.close()
try:
    vllm.generate(prompts, 1, greedy, 0)
    after_close = "generated"
except RuntimeError as error:
    after_close = str(error)
print(json.dumps({"greedy_equal": same, "before": before, "stale": stale, "synced": synced,
                  "after_close": after_close}))
"""


def test_vllm_matches_generate_and_follows_weight_sync(tmp_path: Path, tiny_policy_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK, str(tiny_policy_dir), str(tmp_path / "sync")], env=ENV,
                            capture_output=True, text=True, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["greedy_equal"] == [True, True, True]  # fp32 greedy: the same tokens from both engines
    assert figures["before"] < 1e-4  # vLLM's sampling log-probs are the policy's (fp32)
    assert figures["stale"] > 100 * max(figures["before"], 1e-6)  # weights moved, engine not told: a gap
    assert figures["synced"] < 1e-4  # after reload_weights the engine samples from the new weights
    assert "rollout engine was closed" in figures["after_close"]  # close() stopped vLLM's engine, not exit


def test_bench_rollout_prints_both_engines(tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path) -> None:
    out = tmp_path / "rollout.json"
    result = subprocess.run([PARETORM, "bench-rollout", "--policy", str(tiny_policy_dir), "--prompts", str(prompts_file),
                             "--max-new-tokens", "8", "--repeats", "1", "--dtype", "float32", "--json", str(out)],
                            env=ENV, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["vllm"] > 0 and figures["generate"] > 0
    assert figures["vllm_over_generate"] == pytest.approx(figures["vllm"] / figures["generate"])
    assert "tokens/s" in result.stdout
