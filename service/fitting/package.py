"""Assemble fitted heads and the frozen backbone into an ArmoRM checkpoint directory.

The output is the layout ``paretorm serve --model DIR`` loads (``service.model.loading``): the backbone's
weights under ``model.*`` in the same safetensors files as ``regression_layer.weight``,
``reward_transform_matrix`` and ``gating.*``; ``config.json`` with the backbone config plus the head keys
(``num_objectives``, ``objective_names``, ``gating_*``, ``gating_token_pattern``, ``pad_token_id``); the
tokenizer with its chat template. A copy of the backbone is simple and self-contained; for billion-parameter
backbones it doubles the disk use (``max_shard_size`` keeps the files manageable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.model.armorm import ArmoRMRewardModel
from service.model.config import ArmoRMHeadConfig
from service.model.gating import GatingNetwork
from service.model.loading import parameters_on_meta, save_armorm_checkpoint


def assemble_armorm(
    backbone: nn.Module,
    *,
    objective_names: Sequence[str],
    regression_weight: torch.Tensor,
    transform: torch.Tensor,
    gating: GatingNetwork,
    gate_pattern: Sequence[int],
    pad_token_id: int | None,
) -> ArmoRMRewardModel:
    """An ``ArmoRMRewardModel`` that shares the backbone's tensors (no copy, no random init)."""
    config = backbone.config
    n_hidden = len(gating.layers) - 1
    head = ArmoRMHeadConfig(
        num_objectives=len(objective_names),
        objective_names=tuple(objective_names),
        gating_temperature=gating.temperature,
        gating_hidden_dim=gating.layers[0].out_features if n_hidden else 1024,
        gating_n_hidden=n_hidden,
        gating_token_pattern=tuple(int(t) for t in gate_pattern),
        pad_token_id=pad_token_id,
    )
    with parameters_on_meta():
        model = ArmoRMRewardModel(config, head)
    state: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    state["regression_layer.weight"] = regression_weight.detach().float().cpu()
    state["reward_transform_matrix"] = transform.detach().float().cpu()
    state.update({f"gating.{k}": v.detach().float().cpu() for k, v in gating.state_dict().items()})
    model.load_state_dict(state, strict=True, assign=True)
    model.reward_transform_matrix.requires_grad_(False)
    return model.eval().requires_grad_(False)


def save_fitted_checkpoint(
    model: ArmoRMRewardModel,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    max_shard_size: int | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` with ``save_armorm_checkpoint`` (the serving side's own writer)."""
    return save_armorm_checkpoint(model, tokenizer, out_dir, max_shard_size=max_shard_size, extra_config=extra_config)
