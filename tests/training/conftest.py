"""Fixtures for the trainer tests: a tiny causal-LM policy, prompt files, and a real reward service.

The policy is a random 2-layer Llama (head_dim 32, so vLLM's CPU backend takes it) over the tiny test
tokenizer, with its end-of-turn logit lifted so that sampled answers end after ~8 tokens on average: the
length of an answer is then something the policy can visibly learn to change in a few steps, which is what
the learning tests need from "a policy and reward the test controls".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service_process import ServiceProcess

PROMPTS = [
    "What is the capital of France?", "Write a short poem about water.", "Explain why the sky is blue.",
    "List three steps to read a file.", "Give me a synonym for beautiful.", "What is a good test?",
    "How do I add two numbers in python?", "Say something about the weather today.",
    "Summarise the river and the mountain.", "Why is fast code better than slow code?",
    "What is the sum of a list of numbers?", "Tell me about the earth and the air.",
]  # fmt: skip
HELD_OUT = ["Describe a city by a river.", "What should a function return?", "Explain a token.",
            "How do you open a file?", "Name a country with mountains.", "What makes a response helpful?"]  # fmt: skip


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def build_tiny_policy(out: Path, *, eos_logit: float = 6.0, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from service.model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        _lift_eos(model, tokenizer, eos_logit)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def _lift_eos(model, tokenizer, eos_logit: float) -> None:  # noqa: ANN001
    """Point the end-of-turn row of the LM head along the mean final hidden state, scaled to ``eos_logit``."""
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": p} for p in PROMPTS[:1]],
                                        add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]  # fmt: skip
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0)
        model.lm_head.weight[tokenizer.eos_token_id] = hidden * (eos_logit / hidden.dot(hidden))


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("tiny-policy"))


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts") / "train.jsonl", PROMPTS)


@pytest.fixture(scope="session")
def held_out_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts") / "held_out.jsonl", HELD_OUT)


@pytest.fixture(scope="session")
def reward_service(tiny_armorm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    log = tmp_path_factory.mktemp("service-log") / "serve.log"
    with ServiceProcess(tiny_armorm_dir, log_path=log) as service:
        yield service
