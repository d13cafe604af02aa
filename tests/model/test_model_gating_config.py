"""Gating network maths and state-dict names; head config defaults and errors; the 8B layout's shapes."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from service.model import (
    ARMORM_OBJECTIVES,
    LLAMA3_GATE_PATTERN,
    ArmoRMHeadConfig,
    ArmoRMRewardModel,
    GatingNetwork,
)


def test_gating_matches_formula_and_sums_to_logit_scale() -> None:
    torch.manual_seed(0)
    gate = GatingNetwork(8, 5, temperature=2.5, hidden_dim=6, n_hidden=2)
    with torch.no_grad():
        gate.logit_scale.fill_(1.7)
    x = torch.randn(4, 8)
    h = x
    for i, layer in enumerate(gate.layers):
        h = h @ layer.weight.T + layer.bias
        h = torch.relu(h) if i < 2 else h
    expected = torch.softmax(h / 2.5, dim=1) * 1.7
    out = gate(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.sum(-1), torch.full((4,), 1.7), rtol=0, atol=1e-5)
    assert (out >= 0).all()


def test_gating_state_dict_has_reference_names_and_no_temperature() -> None:
    gate = GatingNetwork(8, 5, hidden_dim=6, n_hidden=3)
    shapes = {k: tuple(v.shape) for k, v in gate.state_dict().items()}
    assert shapes == {
        "logit_scale": (1,),
        "layers.0.weight": (6, 8), "layers.0.bias": (6,),
        "layers.1.weight": (6, 6), "layers.1.bias": (6,),
        "layers.2.weight": (6, 6), "layers.2.bias": (6,),
        "layers.3.weight": (5, 6), "layers.3.bias": (5,),
    }  # fmt: skip
    assert gate.temperature == 10.0
    assert GatingNetwork(8, 5, n_hidden=0).layers[0].weight.shape == (5, 8)
    with pytest.raises(ValueError, match="temperature"):
        GatingNetwork(8, 5, temperature=0)


def test_head_config_requires_num_objectives() -> None:
    with pytest.raises(ValueError, match="num_objectives"):
        ArmoRMHeadConfig.from_dict({"hidden_size": 16})


def test_head_config_defaults_follow_the_reference() -> None:
    cfg = ArmoRMHeadConfig.from_dict({"num_objectives": 19, "pad_token_id": 128256})
    assert cfg.objective_names == ARMORM_OBJECTIVES
    assert cfg.objective_names[4] == "helpsteer-verbosity" and len(ARMORM_OBJECTIVES) == 19
    assert (cfg.gating_temperature, cfg.gating_hidden_dim, cfg.gating_n_hidden) == (10.0, 1024, 3)
    assert cfg.gating_token_pattern == LLAMA3_GATE_PATTERN == (128009, 128006, 78191, 128007, 271)
    assert cfg.pad_token_id == 128256
    assert ArmoRMHeadConfig.from_dict({"num_objectives": 3}).objective_names == (
        "objective_0", "objective_1", "objective_2",
    )  # fmt: skip
    given = ArmoRMHeadConfig.from_dict(
        {"num_objectives": 2, "objective_names": ["a", "b"], "gating_token_pattern": [4, 5]}
    )
    assert given.objective_names == ("a", "b") and given.gating_token_pattern == (4, 5)
    assert ArmoRMHeadConfig.from_dict(given.to_dict()) == given
    with pytest.raises(ValueError, match="one name per objective"):
        ArmoRMHeadConfig.from_dict({"num_objectives": 2, "objective_names": ["a"]})


def test_8b_layout_matches_the_published_tensor_inventory() -> None:
    """Built on meta: the real checkpoint's names and shapes (armorm.md §1.3) with no weights allocated."""
    llama3_8b = LlamaConfig(
        vocab_size=128257, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, pad_token_id=128256,
    )  # fmt: skip
    with torch.device("meta"):
        model = ArmoRMRewardModel(llama3_8b, ArmoRMHeadConfig.from_dict({"num_objectives": 19}))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    heads = {k: v for k, v in shapes.items() if not k.startswith("model.")}
    assert heads == {
        "regression_layer.weight": (19, 4096),
        "reward_transform_matrix": (19, 19),
        "gating.logit_scale": (1,),
        "gating.layers.0.weight": (1024, 4096), "gating.layers.0.bias": (1024,),
        "gating.layers.1.weight": (1024, 1024), "gating.layers.1.bias": (1024,),
        "gating.layers.2.weight": (1024, 1024), "gating.layers.2.bias": (1024,),
        "gating.layers.3.weight": (19, 1024), "gating.layers.3.bias": (19,),
    }  # fmt: skip
    assert shapes["model.embed_tokens.weight"] == (128257, 4096)
    assert shapes["model.norm.weight"] == (4096,)
    assert "model.layers.31.self_attn.k_proj.weight" in shapes and "lm_head.weight" not in shapes
    n_params = sum(p.numel() for p in model.parameters())
    assert 7.50e9 < n_params < 7.52e9  # the hub shows ~7.51B
