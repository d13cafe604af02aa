"""LoRA through peft: merged weights for vLLM and the export, adapter-only checkpoints, exact resume.

The unit tests check the one rule everything else rests on — `plain_state` equals peft's own
``merge_and_unload`` under the plain model's names, without touching the base — and the end-to-end test
runs GRPO with an adapter against the real service with vLLM rollouts: the recomputed log-probs agree with
vLLM's (so vLLM got the merged weights after each update), the checkpoint is the adapter alone, and a
resumed run continues as the uninterrupted one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from service.training.config import ConfigError, LoraSettings
from service.training.lora import is_lora, plain_state, trainable_fraction
from service.training.policy import load_policy, load_trainable, save_policy, save_trainable
from tests.support.service_process import ServiceProcess
from tests.training.train_process import metrics, run_train, train_command

SETTINGS = LoraSettings(rank=4, alpha=8.0, dropout=0.0, targets=("all-linear",))


def _perturbed(tiny_policy_dir: Path):  # noqa: ANN202
    policy = load_trainable(tiny_policy_dir, None, "cpu", SETTINGS)
    generator = torch.Generator().manual_seed(0)
    for name, parameter in policy.model.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.05
    return policy


def test_plain_state_is_peft_merge_under_plain_names(tiny_policy_dir: Path) -> None:
    policy = _perturbed(tiny_policy_dir)
    base = load_policy(tiny_policy_dir).model.state_dict()
    ours = dict(plain_state(policy.model))
    merged = copy.deepcopy(policy.model).merge_and_unload().state_dict()
    assert set(ours) == set(base) == set(merged)
    changed = [k for k in ours if not torch.equal(ours[k], base[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)  # every linear layer, not the LM head
    for key in ours:
        torch.testing.assert_close(ours[key], merged[key], rtol=0, atol=1e-6)
    for key, tensor in policy.model.get_base_model().state_dict().items():  # the base was not merged into
        plain = key.replace(".base_layer.", ".")
        if ".lora_" not in key:
            assert torch.equal(tensor, base[plain])
    assert 0 < trainable_fraction(policy.model) < 0.2


def test_export_is_a_merged_causal_lm_and_checkpoint_the_adapter_alone(tiny_policy_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    policy = _perturbed(tiny_policy_dir)
    save_policy(policy, tmp_path / "final")
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final"), dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, policy.model(input_ids=ids).logits, rtol=0, atol=1e-5)
    assert (tmp_path / "final" / "adapter" / "adapter_config.json").is_file()

    save_trainable(policy, tmp_path / "ckpt")
    assert not list((tmp_path / "ckpt").glob("model*.safetensors"))  # no copy of the base
    resumed = load_trainable(tiny_policy_dir, tmp_path / "ckpt", "cpu", SETTINGS)
    assert is_lora(resumed.model)
    assert all(p.requires_grad == ("lora_" in n) for n, p in resumed.model.named_parameters())
    for (name, ours), (_, theirs) in zip(plain_state(resumed.model), plain_state(policy.model), strict=True):
        assert torch.equal(ours, theirs), name
    with pytest.raises(ConfigError, match="LoRA adapter"):
        load_trainable(tiny_policy_dir, tmp_path / "ckpt", "cpu", None)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.second_stage  # ~55 s; the full-weight GRPO kill-and-resume is proven in the default run
def test_grpo_with_lora_over_http_resumes_exactly(
    tmp_path: Path, tiny_policy_dir: Path, prompts_file: Path, reward_service: ServiceProcess
) -> None:
    args = ("--save-every", "2", "--learning-rate", "5e-3", "--rule-reward", "length:16:0:1", "--weights",
            "length=1", "--rollout", "vllm", "--minibatches", "2", "--lora-rank", "4")  # fmt: skip

    def train(out: Path, steps: int, *extra: str) -> None:
        url = reward_service.url
        run_train([*train_command("grpo", out, tiny_policy_dir, prompts_file, url, "--steps", str(steps), *args), *extra])

    straight, first = tmp_path / "straight", tmp_path / "resumed"
    train(straight, 3)
    train(first, 2)
    train(first, 3, "--resume")

    rows = metrics(straight)
    assert [r["step"] for r in metrics(first)] == [1, 2, 3]
    # the trainer's recomputed log-probs match vLLM's sampling ones: vLLM runs the merged, updated weights
    assert all(r["rollout/logprob_gap"] < 1e-3 for r in rows[1:]), [r["rollout/logprob_gap"] for r in rows]
    resumed_last, straight_last = metrics(first)[-1], rows[-1]
    for key in ("loss", "reward", "grad_norm", "rollout/logprob_gap"):
        assert resumed_last[key] == pytest.approx(straight_last[key], rel=1e-4, abs=1e-6), key
    adapter = straight / "checkpoints" / "step-000003" / "policy"
    assert (adapter / "adapter_config.json").is_file() and not list(adapter.glob("model*.safetensors"))
    info = json.loads((straight / "final" / "paretorm_training.json").read_text())
    assert info["algorithm"] == "grpo"
    assert (straight / "final" / "model.safetensors").is_file()
