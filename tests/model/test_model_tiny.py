"""Tiny checkpoints are deterministic, in the real layout, and shaped for vLLM's CPU attention."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from service.model import (
    build_tiny_armorm,
    build_tiny_tokenizer,
    ensure_demo_model,
    gate_position,
    load_reward_model,
    save_armorm_checkpoint,
)


def _tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_same_seed_same_tensors_other_seed_differs(tiny_armorm_dir: Path, tmp_path: Path) -> None:
    again = _tensors(build_tiny_armorm(tmp_path / "again", seed=0))
    first = _tensors(tiny_armorm_dir)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = _tensors(build_tiny_armorm(tmp_path / "other", seed=1))
    assert not torch.equal(first["regression_layer.weight"], other["regression_layer.weight"])
    assert not torch.equal(first["model.embed_tokens.weight"], other["model.embed_tokens.weight"])
    assert (tiny_armorm_dir / "tokenizer.json").read_bytes() == (
        tmp_path / "again" / "tokenizer.json"
    ).read_bytes()


def test_tiny_heads_exercise_transform_and_logit_scale(tiny_armorm_dir: Path) -> None:
    t = _tensors(tiny_armorm_dir)
    transform = t["reward_transform_matrix"]
    k = transform.shape[0]
    off_diagonal = transform - torch.diag(torch.diagonal(transform))
    assert torch.equal(torch.diagonal(transform), torch.ones(k))
    # Only the verbosity row (index 4) is non-zero off the diagonal, and it is negative.
    assert torch.nonzero(off_diagonal)[:, 0].unique().tolist() == [4]
    assert (off_diagonal[4, torch.arange(k) != 4] < 0).all()
    assert float(t["gating.logit_scale"]) != 1.0


def test_config_layout_and_head_dim(tiny_armorm_dir: Path) -> None:
    config = json.loads((tiny_armorm_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForRewardModelWithGating"] and config["model_type"] == "llama"
    assert config["hidden_size"] // config["num_attention_heads"] == 32
    assert config["num_objectives"] == len(config["objective_names"]) == 6
    assert config["objective_names"][-1] == "beavertails-is_safe"
    assert config["gating_hidden_dim"] == 64 and config["gating_n_hidden"] == 2
    assert "paretorm_demo" not in config and "auto_map" not in config


def test_tokenizer_template_and_gate_pattern(tiny_armorm_dir: Path) -> None:
    tok = build_tiny_tokenizer()
    assert tok.padding_side == "right" and tok.pad_token == "<|pad|>" and 900 <= len(tok) <= 1024
    assert tok("Hello")["input_ids"][0] != tok.bos_token_id  # no post-processor BOS, as ArmoRM's tokenizer
    messages = [{"role": "user", "content": "  Hi there  "}, {"role": "assistant", "content": "\nYes.\n"}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nYes.<|eot_id|>"
    )
    pattern = json.loads((tiny_armorm_dir / "config.json").read_text())["gating_token_pattern"]
    assert pattern[0] == tok.convert_tokens_to_ids("<|eot_id|>")
    assert tok.decode(pattern) == "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert gate_position(ids, pattern) == ids.index(pattern[0])  # the eot closing the user turn
    for response in ("x", "42 is the answer", "  - a list", "```code```"):
        msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": response}]
        gate_position(
            tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"], pattern
        )


def test_demo_model_is_built_once_and_marked(tmp_path: Path) -> None:
    path = ensure_demo_model(tmp_path)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo_model(tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging leftovers
    loaded = load_reward_model(path)
    assert loaded.is_demo and loaded.description is not None and "RANDOM" in loaded.description
    resaved = save_armorm_checkpoint(loaded.model, loaded.tokenizer, tmp_path / "refit")
    assert load_reward_model(resaved).is_demo is False  # a model saved from the demo is not the demo
