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
    """Write ``model`` with ``save_armorm_checkpoint`` (the serving side's own writer), the backbone in
    `exact_storage_dtype`: a bfloat16 backbone fitted in float32 goes back to disk as bfloat16, not twice
    its size (the embedded default model, fitted in float32 on CPUs without fast bfloat16: 514 MB of
    safetensors for values bfloat16 holds exactly)."""
    return save_armorm_checkpoint(
        model, tokenizer, out_dir, max_shard_size=max_shard_size, extra_config=extra_config,
        backbone_dtype=exact_storage_dtype(model.model),
    )  # fmt: skip


_NARROW_DTYPES = (torch.bfloat16, torch.float16)


def exact_storage_dtype(backbone: nn.Module) -> torch.dtype:
    """The narrowest dtype that holds every floating weight of ``backbone`` exactly, else its own: the
    frozen backbone is stored as its values allow, whatever dtype the fit computed in. Reading the values
    rather than the source's config keeps a checkpoint whose config names one dtype and whose files hold
    another from losing precision."""
    tensors = [t for t in backbone.state_dict().values() if t.is_floating_point()]
    held = tensors[0].dtype if tensors else torch.float32
    for narrow in _NARROW_DTYPES:
        if narrow.itemsize < held.itemsize and all(torch.equal(t.to(narrow).to(t.dtype), t) for t in tensors):
            return narrow
    return held
